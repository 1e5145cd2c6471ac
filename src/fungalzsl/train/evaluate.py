"""Scoring during training: validation Recall@1, WiSE-FT interpolation and the run's class embeddings.

All three go through ``fungalzsl.predict.zeroshot`` (class = normalised mean of normalised description
embeddings; softmax(logit_scale · cos)), so training, ``evaluate`` and ``predict`` agree. When the text
tower is frozen, descriptions are embedded from cached backbone features instead of re-running it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fungalzsl.models import save_weights
from fungalzsl.models.base import TwoTowerModel
from fungalzsl.predict.zeroshot import (
    class_embeddings,
    class_probabilities,
    model_logit_scale,
    save_class_embeddings,
)
from fungalzsl.progress import step
from fungalzsl.rundir import MODEL_FILE
from fungalzsl.train.inputs import FeatureCache, iter_images


class TextFeatures:
    """Frozen text-backbone outputs for every description, computed once per split point."""

    def __init__(self, model: TwoTowerModel, texts: Sequence[str], batch_size: int):
        self.model, self.texts, self.batch_size = model, list(texts), batch_size
        self.index = {t: i for i, t in reversed(list(enumerate(self.texts)))}
        self._feats: dict[int, torch.Tensor] = {}

    def at(self, split: int) -> torch.Tensor | None:
        if split == 0:
            return None
        if split not in self._feats:
            chunks = []
            with torch.no_grad(), step(f"caching frozen text features of {len(self.texts)} descriptions",
                                       len(self.texts)) as bar:  # fmt: skip
                for i in range(0, len(self.texts), self.batch_size):
                    chunks.append(
                        self.model.text_trunk(self.texts[i : i + self.batch_size], split).float().cpu()
                    )
                    bar.advance(len(chunks[-1]))
            self._feats = {split: torch.cat(chunks)}  # one split alive at a time
        return self._feats[split]

    def encoder(self, split: int) -> Any:
        """An object with ``encode_text``/``eval`` for zeroshot.class_embeddings, backed by the cache."""
        feats = self.at(split)
        if feats is None:
            return self.model
        model, index = self.model, self.index

        class _Cached:
            def eval(self) -> _Cached:
                model.eval()
                return self

            def encode_text(self, texts: list[str]) -> torch.Tensor:
                rows = feats[[index[t] for t in texts]].to(model.logit_scale.device)
                return model.text_head(rows, split)

        return _Cached()


@torch.no_grad()
def image_embeddings(model: TwoTowerModel, cache: FeatureCache, split: int, batch_size: int) -> torch.Tensor:
    """Embeddings of the cache's readable images (cached prefix when possible, else from disk)."""
    model.eval()
    device = model.logit_scale.device
    keep = torch.nonzero(cache.scan()).flatten().tolist()
    feats = cache.at(split)
    out = []
    if feats is not None:
        for i in range(0, len(keep), batch_size):
            out.append(model.image_head(feats[keep[i : i + batch_size]].to(device), split).float().cpu())
    else:
        batches = [keep[i : i + batch_size] for i in range(0, len(keep), batch_size)]
        for _, xs in iter_images(cache.paths, batches, model.preprocess, cache.num_workers):
            out.append(model.encode_image(xs.to(device)).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def recall_at_1(
    model: TwoTowerModel,
    cache: FeatureCache,
    isplit: int,
    text_feats: TextFeatures,
    tsplit: int,
    labels: Sequence[int],
    by_class: dict[str, list[str]],
    classes: Sequence[str],
    cfg: Any,
) -> tuple[float, float]:
    """Zero-shot Recall@1 (top-1 accuracy over classes) of the readable images in ``cache``, and the
    mean probability given to the true class (a tie-breaker once Recall@1 saturates)."""
    model.eval()
    cls = class_embeddings(text_feats.encoder(tsplit), by_class, classes)
    img = image_embeddings(model, cache, isplit, cfg.eval_batch_size)
    y = torch.tensor(labels)[cache.scan()]
    probs = class_probabilities(img, cls, model_logit_scale(model))
    p_true = probs.gather(1, y[:, None]).mean()
    return float((probs.argmax(1) == y).float().mean()), float(p_true)


def interpolate(
    theta0: dict[str, torch.Tensor], theta1: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """WiSE-FT: (1-α)·θ0 + α·θ1 for float tensors (integer counters are taken from θ1)."""
    return {
        k: ((1 - alpha) * theta0[k].float() + alpha * v.float()).to(v.dtype) if v.is_floating_point() else v
        for k, v in theta1.items()
    }


def wise_ft_weights(
    model: TwoTowerModel, theta0: dict[str, torch.Tensor], theta1: dict[str, torch.Tensor], alpha: float,
    scope: str = "all",
) -> dict[str, torch.Tensor]:  # fmt: skip
    """WiSE-FT weights at ``alpha``. ``scope="towers"`` mixes the towers only and keeps the trained
    projection heads and temperature: for ``lite`` θ0's heads are random, so mixing them in moves the
    classifier toward noise instead of toward the pretrained features."""
    weights = interpolate(theta0, theta1, alpha)
    if scope == "towers":
        ids = {id(p) for p in model.head_parameters()}
        heads = [n for n, p in model.named_parameters() if id(p) in ids or n == "logit_scale"]
        weights.update({k: theta1[k] for k in heads})
    return weights


def wise_ft_state(
    model: TwoTowerModel, theta0: dict, cfg: Any, run: Path, val_cache: FeatureCache | None,
    text_feats: TextFeatures, final_frozen: dict[str, int], val_set: Any, desc: Any, classes: list[str],
) -> dict[str, Any]:  # fmt: skip
    """Report val Recall@1 for each α; with ``wise_ft_alpha`` keep the interpolated weights as the run's model.

    Groups below the run's deepest unfreeze never trained, so θ0 and θ1 agree there and the cached
    prefix at that split is valid for every α."""
    theta1 = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    isplit = model.cache_split("image", final_frozen["image"]) if cfg.cache else 0
    tsplit = model.cache_split("text", final_frozen["text"]) if cfg.cache else 0
    report: dict[str, Any] = {"alphas": {}, "scope": cfg.wise_ft_scope}
    for alpha in sorted(set(cfg.wise_ft) | ({cfg.wise_ft_alpha} if cfg.wise_ft_alpha is not None else set())):
        model.load_state_dict(wise_ft_weights(model, theta0, theta1, alpha, cfg.wise_ft_scope))
        if val_cache is not None:
            r, _ = recall_at_1(
                model, val_cache, isplit, text_feats, tsplit, val_set.labels, desc.by_class, classes, cfg
            )
            report["alphas"][str(alpha)] = r
    if cfg.wise_ft_alpha is not None:
        model.load_state_dict(theta1)
        save_weights(model, run / "model_finetuned.safetensors")
        model.load_state_dict(wise_ft_weights(model, theta0, theta1, cfg.wise_ft_alpha, cfg.wise_ft_scope))
        save_weights(
            model,
            run / MODEL_FILE,
            {"wise_ft_alpha": str(cfg.wise_ft_alpha), "wise_ft_scope": cfg.wise_ft_scope},
        )
        report["saved_alpha"] = cfg.wise_ft_alpha
    else:
        model.load_state_dict(theta1)
    return report


def write_class_embeddings(
    model: TwoTowerModel,
    by_class: dict[str, list[str]],
    classes: Sequence[str],
    path: Path,
    text_feats: TextFeatures | None = None,
) -> torch.Tensor:
    """RUN/class_embeddings.safetensors: key ``embeddings`` (C × D), rows in ``classes`` order."""
    encoder = text_feats.encoder(len(model.layer_groups()["text"])) if text_feats is not None else model
    return save_class_embeddings(path, class_embeddings(encoder, by_class, classes), classes)
