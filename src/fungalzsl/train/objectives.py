"""Training objectives behind one small interface, so the loop never asks which one it runs.

* :class:`ContrastiveTraining` (``objective: contrastive``): image–text contrastive learning with the
  ``train.loss`` of :mod:`fungalzsl.train.loss` — multi-positive (Eq. 7–9), one-positive CLIP or
  sigmoid. The zero-shot classifier comes from the text tower: class c = normalise(mean of the
  normalised embeddings of c's descriptions). WiSE-FT is part of its finish.
* :class:`CatlipTraining` (``objective: catlip``): BCE of a linear head over the descriptions'
  vocabulary (:mod:`fungalzsl.train.catlip`); the text tower never trains and the classifier comes
  from the head's weight rows.

Lifecycle, in the loop's order: ``check_settings(cfg)`` before anything runs; ``__init__(cfg,
inputs)`` once the inputs are read (may refuse them, before the run directory exists); ``bind(model,
device)`` right after the model is built (it creates the trained tensors, so their seeded init
follows the model's); then per stage ``start_stage``, per batch ``loss``, per epoch ``validate`` and
``save_best``; ``finish`` once at the end."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fungalzsl.errors import fail
from fungalzsl.models.base import TwoTowerModel
from fungalzsl.rundir import CLASS_EMBEDDINGS_FILE
from fungalzsl.train.catlip import CatlipObjective, build_vocabulary, catlip_val_score
from fungalzsl.train.evaluate import TextFeatures, recall_at_1, wise_ft_state, write_class_embeddings
from fungalzsl.train.inputs import FeatureCache, TrainInputs, caption_positives
from fungalzsl.train.loss import SigmoidContrastiveLoss, contrastive_loss
from fungalzsl.train.settings import TrainConfig


class TrainingObjective(ABC):
    """What the training loop asks of an objective."""

    extra: nn.Module  # trained tensors outside the model; RUN/last/ keeps them as ``extra.NAME``

    def __init__(self, cfg: TrainConfig, inputs: TrainInputs):
        self.cfg, self.inputs = cfg, inputs

    @classmethod
    def check_settings(cls, cfg: TrainConfig) -> None:
        """Refuse settings the objective cannot honour (a one-line error before anything runs)."""
        return None  # by default every setting is fine

    @abstractmethod
    def bind(self, model: TwoTowerModel, device: torch.device) -> None:
        """Create ``extra`` for ``model`` on ``device``."""

    def parameters(self) -> list[nn.Parameter]:
        """The extra trainable tensors: AdamW's head group holds them after the temperature."""
        return list(self.extra.parameters())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.extra.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.extra.load_state_dict(state)

    def unfreeze_limits(
        self, max_unfrozen: dict[str, int | None], start: dict[str, int]
    ) -> tuple[dict[str, int | None], dict[str, int]]:
        """The per-tower (maximum, start) of the unfreezing schedule; the settings' by default."""
        return dict(max_unfrozen), dict(start)

    def start_stage(self, tsplit: int) -> None:
        """A new unfreezing stage begins; the text tower's bottom ``tsplit`` groups are cached."""
        return None  # by default nothing depends on the stage

    @abstractmethod
    def loss(
        self,
        model: TwoTowerModel,
        image: torch.Tensor,
        text_idx: torch.Tensor,
        labels: torch.Tensor,
        image_idx: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """{"loss", "loss_image", "loss_text"} of one batch: the batch's image embeddings (N, D), the
        indices of their paired texts in ``inputs.texts``, their class labels (N,) and the images'
        indices in the train split (what grounded captions need to know whose caption is whose)."""

    @abstractmethod
    def validate(
        self, model: TwoTowerModel, cache: FeatureCache, isplit: int, tsplit: int
    ) -> tuple[float, float]:
        """(Recall@1, mean p(true class)) of the objective's zero-shot classifier on the val split."""

    def save_best(self, run: Path) -> None:
        """Save what the best epoch needs beyond the model's weights (RUN/model.safetensors)."""
        return None  # by default the weights are all

    @abstractmethod
    def finish(
        self, model: TwoTowerModel, run: Path, val_cache: FeatureCache | None, final_frozen: dict[str, int]
    ) -> dict[str, Any]:
        """With the best weights loaded: write RUN/class_embeddings.safetensors (and whatever else the
        objective keeps); return the fields it adds to config.json."""


class ContrastiveTraining(TrainingObjective):
    """Image–text contrastive learning (``train.loss``: multi_positive, clip or sigmoid)."""

    def bind(self, model: TwoTowerModel, device: torch.device) -> None:
        cfg = self.cfg
        # WiSE-FT's θ0: the model as built (pretrained towers; for lite, the seeded random heads)
        self.theta0 = (
            {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if cfg.wise_ft or cfg.wise_ft_alpha is not None
            else None
        )
        self.text_feats = TextFeatures(model, self.inputs.texts, cfg.eval_batch_size)
        self.extra = contrastive_loss(cfg.loss, getattr(model, "init_logit_bias", None)).to(device)
        self.device = device

    def start_stage(self, tsplit: int) -> None:
        self.tsplit = tsplit
        self.tfeats = self.text_feats.at(tsplit)  # None while the text tower trains from strings

    def loss(
        self,
        model: TwoTowerModel,
        image: torch.Tensor,
        text_idx: torch.Tensor,
        labels: torch.Tensor,
        image_idx: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if self.tfeats is not None:
            text_in: Any = self.tfeats[text_idx].to(self.device)
        else:
            text_in = [self.inputs.texts[i] for i in text_idx.tolist()]
        text = model.text_head(text_in, self.tsplit)
        positives = None
        if self.inputs.caption_ids is not None:
            assert image_idx is not None  # the loop passes it
            positives = caption_positives(self.inputs, image_idx.to(text_idx.device), text_idx, labels)
        return self.extra(image, text, labels, model.clamped_logit_scale(), positives)

    def validate(
        self, model: TwoTowerModel, cache: FeatureCache, isplit: int, tsplit: int
    ) -> tuple[float, float]:
        inputs = self.inputs
        assert inputs.val_set is not None  # the loop validates only with a val split
        return recall_at_1(
            model, cache, isplit, self.text_feats, tsplit, inputs.val_set.labels, inputs.desc.by_class,
            inputs.classes, self.cfg,
        )  # fmt: skip

    def finish(
        self, model: TwoTowerModel, run: Path, val_cache: FeatureCache | None, final_frozen: dict[str, int]
    ) -> dict[str, Any]:
        cfg, inputs, out = self.cfg, self.inputs, {}
        if self.theta0 is not None:  # may replace model (and RUN/model.safetensors) by (1-α)·θ0 + α·θ
            out["wise_ft"] = wise_ft_state(
                model, self.theta0, cfg, run, val_cache, self.text_feats, final_frozen, inputs.val_set,
                inputs.desc, inputs.classes,
            )  # fmt: skip
        # descriptions embed from the cached text features when the text tower never trained
        text_frozen_always = final_frozen["text"] == len(model.layer_groups()["text"])
        cache = self.text_feats if text_frozen_always and cfg.cache else None
        path = run / CLASS_EMBEDDINGS_FILE
        write_class_embeddings(model, inputs.desc.by_class, inputs.classes, path, cache)
        if isinstance(self.extra, SigmoidContrastiveLoss):
            out["logit_bias"] = float(self.extra.logit_bias.detach())
        return out


class CatlipTraining(TrainingObjective):
    """CatLIP: BCE over the vocabulary of the descriptions, on the image tower alone."""

    extra: CatlipObjective

    @classmethod
    def check_settings(cls, cfg: TrainConfig) -> None:
        if cfg.wise_ft or cfg.wise_ft_alpha is not None:
            raise fail("WiSE-FT is not defined for the catlip objective", "drop --wise-ft or use contrastive")

    def __init__(self, cfg: TrainConfig, inputs: TrainInputs):
        super().__init__(cfg, inputs)
        self.vocab = build_vocabulary(inputs.desc.by_class, inputs.classes, cfg.catlip_min_count)

    def bind(self, model: TwoTowerModel, device: torch.device) -> None:
        self.extra = CatlipObjective(self.vocab, self.inputs.classes, model.embed_dim).to(device)

    def unfreeze_limits(
        self, max_unfrozen: dict[str, int | None], start: dict[str, int]
    ) -> tuple[dict[str, int | None], dict[str, int]]:
        return {**max_unfrozen, "text": 0}, {**start, "text": 0}  # no text loss: the text tower never trains

    def loss(
        self,
        model: TwoTowerModel,
        image: torch.Tensor,
        text_idx: torch.Tensor,
        labels: torch.Tensor,
        image_idx: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        return self.extra.loss(image, labels)  # targets are per class: the paired text plays no part

    def validate(
        self, model: TwoTowerModel, cache: FeatureCache, isplit: int, tsplit: int
    ) -> tuple[float, float]:
        assert self.inputs.val_set is not None  # the loop validates only with a val split
        return catlip_val_score(self.extra, model, cache, isplit, self.inputs.val_set.labels, self.cfg)

    def save_best(self, run: Path) -> None:
        self.extra.save_head(run)

    def finish(
        self, model: TwoTowerModel, run: Path, val_cache: FeatureCache | None, final_frozen: dict[str, int]
    ) -> dict[str, Any]:
        self.extra.load_head(run)  # the best epoch's head; its classifier and the vocabulary beside it
        self.extra.write(run)
        return {"catlip_vocabulary_size": len(self.extra.vocab["items"])}


OBJECTIVES: dict[str, type[TrainingObjective]] = {
    "contrastive": ContrastiveTraining,
    "catlip": CatlipTraining,
}


def objective_for(cfg: TrainConfig) -> type[TrainingObjective]:
    """The objective class of ``cfg.objective``, after it has checked the settings."""
    cls = OBJECTIVES[cfg.objective]
    cls.check_settings(cfg)
    return cls
