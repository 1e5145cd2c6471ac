"""``fungalzsl baseline MODEL_SPEC --data DIR --method M --out OUT``: the classifiers that need no
fine-tuning, as run directories that evaluate, predict, serve, table and ``Classifier.load`` accept.

The model is the spec's pretrained weights, frozen (``lite``'s projection heads are its seeded random
initialisation, as ``fungalzsl train`` starts from). A bounded, seeded support set of the dataset's
training images (``support_per_class`` per class, no text) fits one of the few-shot adapters of
:mod:`fungalzsl.fewshot.methods` on the frozen image embeddings:

* ``zeroshot``: no adapter, the text classifier alone (the zero-shot pretrained row);
* ``prototype``: class centroids of the support embeddings (nearest centroid, no text);
* ``probe``: an L2 logistic regression on them (the only one with trained parameters, C·D + C);
* ``tip``: Tip-Adapter / SuS-X style, training-free: the support set as a cache blended with the
  zero-shot text classifier (α, β chosen by leave-one-out on the support; no gradient step).

OUT holds ``config.json`` (``"weights": "pretrained"`` with the ``seed`` and ``weights_sha256`` that
:func:`fungalzsl.models.registry.load_run` rebuilds and checks, so no ``model.safetensors`` is
written), ``class_embeddings.safetensors`` (the text: descriptions or the template) and, except for
``zeroshot``, ``adapter.json`` + ``adapter.safetensors`` (:mod:`fungalzsl.fewshot.adapter`). Cost keys
shared with ``fungalzsl train`` and ``fungalzsl table``: ``trainable_params``, ``peak_rss_mb``
(``ru_maxrss`` of this process) and ``s_per_it`` (None: no iterations). Written whole or not at all."""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fungalzsl.errors import fail
from fungalzsl.eval.methods import DEFAULT_TEMPLATE
from fungalzsl.fewshot.adapter import ADAPTER_METHODS, Adapter, fit_adapter, save_adapter
from fungalzsl.images import ImageSet, list_split
from fungalzsl.io import atomic_write_json
from fungalzsl.labelled import LabelledImage, class_counts
from fungalzsl.outdir import staged_dir
from fungalzsl.rundir import (
    ADAPTER_FILE,
    ADAPTER_TENSORS_FILE,
    CLASS_EMBEDDINGS_FILE,
    CONFIG_FILE,
    EVALUATIONS_FILE,
)

BASELINE_METHODS = ("zeroshot", *ADAPTER_METHODS)
DEFAULT_SUPPORT = 64  # support images per class: a bounded cache (Tip-Adapter used 1-16, SuS-X up to 100)
_OWNED = (CONFIG_FILE, CLASS_EMBEDDINGS_FILE, ADAPTER_FILE, ADAPTER_TENSORS_FILE, EVALUATIONS_FILE)


def draw_support(images: ImageSet, max_per_class: int, seed: int) -> list[LabelledImage]:
    """Up to ``max_per_class`` images of each class, drawn by ``numpy.random.default_rng([seed, k])``
    for class k (so the other classes' sizes do not change its draw), in path order within a class."""
    labels = np.asarray(images.labels)
    out: list[LabelledImage] = []
    for k, name in enumerate(images.classes):
        idx = np.flatnonzero(labels == k)
        picked = np.sort(np.random.default_rng([seed, k]).permutation(idx)[:max_per_class])
        out += [LabelledImage(images.paths[i], name, "support") for i in picked]
    return out


def _read_support(data: Path, split: str | None) -> ImageSet:
    images = list_split(data, split)
    present = set(images.labels)
    missing = [c for k, c in enumerate(images.classes) if k not in present]
    if missing:
        where = data / split if split else data
        raise fail(
            f"class(es) {', '.join(missing)} have no images under {where}", "every class needs support images"
        )
    return images


def _class_text(
    classes: Sequence[str], descriptions: str | Path | None, template: str
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The texts of each class and what config.json records about them."""
    if descriptions is None:
        if "{class}" not in template:
            raise fail(f"template {template!r} lacks '{{class}}'", "e.g. 'a photo of a {class}.'")
        return {c: [template.replace("{class}", c)] for c in classes}, {"template": template}
    from fungalzsl.text.records import load_description_set

    desc = load_description_set(descriptions)
    missing = [c for c in classes if not desc.by_class.get(c)]
    if missing:
        raise fail(
            f"{descriptions} describes no {', '.join(missing)}", "give every class of --data descriptions"
        )
    info = {"name": desc.name, "path": str(Path(descriptions).resolve()), "hash": desc.hash}
    return {c: desc.by_class[c] for c in classes}, {"descriptions": info, "descriptions_hash": desc.hash}


def _check_args(method: str, support_per_class: int, spec: str, options: dict[str, Any]) -> None:
    if method not in BASELINE_METHODS:
        raise fail(f"unknown --method {method!r}", f"choose one of: {', '.join(BASELINE_METHODS)}")
    if support_per_class < 1:
        raise fail(
            f"--support-per-class {support_per_class} must be at least 1", "e.g. --support-per-class 64"
        )
    if options and spec != "lite":
        raise fail(f"--image-size / --embed-dim are options of 'lite', not of {spec}", "drop them")


def build_baseline(
    spec: str,
    data: str | Path,
    out: str | Path,
    method: str = "prototype",
    *,
    split: str | None = "train",
    support_per_class: int = DEFAULT_SUPPORT,
    seed: int = 0,
    descriptions: str | Path | None = None,
    template: str = DEFAULT_TEMPLATE,
    model_options: dict[str, Any] | None = None,
    batch_size: int = 32,
    device: str = "cpu",
) -> dict[str, Any]:
    """Fit ``method`` on a seeded support set of ``data``'s ``split`` with ``spec``'s frozen pretrained
    model and write OUT as a run directory; returns its config.json."""
    from fungalzsl.models.registry import PRETRAINED_WEIGHTS, build_pretrained, weights_fingerprint
    from fungalzsl.predict.zeroshot import class_embeddings, save_class_embeddings
    from fungalzsl.progress import step

    t0 = time.perf_counter()
    data, out, options = Path(data), Path(out), dict(model_options or {})
    split = None if split in (None, "", "none", ".") else split
    _check_args(method, support_per_class, spec, options)
    images = _read_support(data, split)
    classes = list(images.classes)
    by_class, text_info = _class_text(classes, descriptions, template)
    with staged_dir(out, _OWNED, "a baseline run") as stage:
        with step(f"starting model {spec}", now=True):
            model = build_pretrained(spec, options, seed).to(device).eval()
            fingerprint = weights_fingerprint(model)
        with torch.no_grad():
            class_emb = class_embeddings(model, by_class, classes).float().cpu()
        support = draw_support(images, support_per_class, seed) if method != "zeroshot" else []
        adapter = _fit(model, method, support, classes, class_emb, batch_size) if support else None
        counts = class_counts(support) if support else {}
        config = {
            "model": spec,
            "model_options": options,
            "weights": PRETRAINED_WEIGHTS,
            "seed": seed,
            "weights_sha256": fingerprint,
            "classes": classes,
            **text_info,
            "image_size": getattr(model, "image_size", None),
            "embed_dim": int(class_emb.shape[1]),
            "data": str(data.resolve()),
            "baseline": {
                "method": method,
                "split": split,
                "support_max_per_class": support_per_class,
                "support_per_class": counts,
                "seed": seed,
            },
            # the probe's weights are the only fitted parameters; centroids and caches are not trained
            "trainable_params": sum(t.numel() for t in adapter.tensors.values()) if method == "probe" else 0,
            "total_params": sum(p.numel() for p in model.parameters()),
            "s_per_it": None,  # no training iterations (the probe's L-BFGS fit is not one)
            "status": "done",
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        save_class_embeddings(stage / CLASS_EMBEDDINGS_FILE, class_emb, classes)
        if adapter is not None:
            config["adapter"] = {"method": method, "params": adapter.params, "shots_per_class": counts}
            adapter.info = {"support": str(data.resolve()), "split": split, "seed": seed, "shots_per_class": counts,
                            "support_files": [str(i.path.relative_to(data)) for i in support]}  # fmt: skip
            save_adapter(stage, adapter)
        config["build_s"] = round(time.perf_counter() - t0, 2)
        config["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        atomic_write_json(stage / CONFIG_FILE, json.loads(json.dumps(config, default=str)))
    return config


def _fit(
    model: Any,
    method: str,
    support: list[LabelledImage],
    classes: list[str],
    class_emb: torch.Tensor,
    bs: int,
) -> Adapter:
    """Embed the support images with the frozen model and fit ``method`` on them."""
    from fungalzsl.fewshot.adapt import embed_labelled
    from fungalzsl.predict.zeroshot import class_logits, model_logit_scale

    scale = model_logit_scale(model)
    emb = embed_labelled(model, support, classes, "support images", bs)
    zs = class_logits(emb.emb, class_emb, scale)
    return fit_adapter(method, emb.emb, emb.labels, classes, zs, scale, class_emb)
