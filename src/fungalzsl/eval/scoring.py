"""Scoring an embedded split: embed a split's images once, then score it with description sets and
classifiers (Recall@1, calibration, per-class metrics from fungalzsl.eval.metrics, plus image↔text
retrieval). Shared by ``evaluate`` and ``compare``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fungalzsl.errors import fail
from fungalzsl.eval.attributes import BLEND_WEIGHT
from fungalzsl.eval.classifier import (
    AdaptedClassifier,
    ZeroShotClassifier,
    adapted_classifier,
    build_classifier,
    fit_logit_scale,
)
from fungalzsl.eval.gzsl import StackedClassifier, stack
from fungalzsl.eval.metrics import classification_metrics, retrieval_recall
from fungalzsl.predict.embed import embed_images, embed_texts
from fungalzsl.text.records import DescriptionSet


@dataclass
class Scored:
    """One description set's result on one split: probabilities plus the metrics computed from them."""

    name: str
    probs: np.ndarray
    metrics: dict[str, Any]


@dataclass
class EmbeddedSplit:
    """A split embedded once by one model, reused by every description set and classifier."""

    paths: list[Path]
    labels: np.ndarray
    classes: list[str]
    emb: torch.Tensor
    errors: list[str]
    seconds: float
    # the inputs of an adapter fitted on other features or views (fewshot.features), one row per image
    adapter_inputs: torch.Tensor | None = None


@dataclass
class Stacking:
    """Calibrated stacking's inputs: seen-class images (labels in the evaluated classes' order), the
    seen-class mask over those classes and the budget (eval.gzsl)."""

    split: EmbeddedSplit
    mask: torch.Tensor
    budget: float


def embed_split(
    model: Any, paths: Sequence[Path], labels: Sequence[int], classes: list[str], batch_size: int = 64
) -> EmbeddedSplit:
    """Embed every readable image; unreadable files are listed, not fatal (unless none is readable)."""
    t0 = time.perf_counter()
    emb, kept, errors = embed_images(model, paths, batch_size=batch_size)
    if not kept:
        raise fail(
            f"none of the {len(paths)} images could be read (first: {errors[0] if errors else '?'})",
            "check the --data directory",
        )
    return EmbeddedSplit(
        paths=[Path(paths[i]) for i in kept],
        labels=np.asarray([labels[i] for i in kept], dtype=np.int64),
        classes=classes,
        emb=emb,
        errors=errors,
        seconds=time.perf_counter() - t0,
    )


def score_set(
    split: EmbeddedSplit,
    clf: ZeroShotClassifier | AdaptedClassifier | StackedClassifier,
    name: str,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    text_emb: torch.Tensor | None = None,
    text_labels: Sequence[int] | None = None,
) -> Scored:
    """Probabilities and metrics of one classifier on an embedded split (+ retrieval if texts given)."""
    with torch.no_grad():
        probs = clf.probabilities(split.emb).double().numpy()
    m = classification_metrics(split.labels, probs, split.classes, n_boot=n_boot, seed=seed)
    m["retrieval"] = (
        retrieval_recall(split.emb.numpy(), split.labels, text_emb.numpy(), np.asarray(text_labels))
        if text_emb is not None and text_labels is not None and len(text_labels)
        else None
    )
    m["classifier"] = clf.method
    m["logit_scale"] = clf.logit_scale
    return Scored(name=name, probs=probs, metrics=m)


def _described_texts(ds: DescriptionSet | None, classes: list[str]) -> tuple[list[str], list[int]]:
    if ds is None:
        return [], []
    texts, owners = [], []
    for i, c in enumerate(classes):
        for t in ds.by_class.get(c, []):
            texts.append(t)
            owners.append(i)
    return texts, owners


def retrieval_metrics(
    model: Any, split: EmbeddedSplit, ds: DescriptionSet | None, seed: int, max_texts: int
) -> dict[str, dict[str, float]] | None:
    """Image↔text Recall@1/5/10 over ``ds``'s individual descriptions (None without a set)."""
    texts, owners = _described_texts(ds, split.classes)
    if not texts:
        return None
    if len(texts) > max_texts:
        # Retrieval over thousands of captions costs a text-encoder pass each; a seeded subsample
        # keeps the estimate unbiased and the run short.
        pick = np.sort(np.random.default_rng(seed).choice(len(texts), max_texts, replace=False))
        texts, owners = [texts[i] for i in pick], [owners[i] for i in pick]
    return retrieval_recall(
        split.emb.numpy(), split.labels, embed_texts(model, texts).numpy(), np.asarray(owners)
    )


def score_sets(
    source_model: Any,
    split: EmbeddedSplit,
    sets: list[DescriptionSet | None],
    *,
    classifier: str,
    stored: tuple[list[str], torch.Tensor] | None,
    n_boot: int,
    seed: int,
    hierarchy: dict[str, list[str]] | None,
    template: str,
    max_retrieval_texts: int,
    calibration: EmbeddedSplit | None = None,
    adapter: Any = None,
    stacking: Stacking | None = None,
    blend_weight: float = BLEND_WEIGHT,
) -> list[Scored]:
    """Score an embedded split with each description set (``None``: stored embeddings when the
    classifier is ``mean``, else class names only — template/waffle/chils). With ``calibration`` (another
    labelled split, embedded by the same model) each classifier's logit scale is refitted on it first.
    ``adapter`` (a run written by ``fungalzsl adapt``) is applied on top of the stored embeddings.
    ``stacking`` applies calibrated stacking (eval.gzsl) last, its shift fitted on its seen-class split.
    ``blend_weight``: the weight of ``classifier='blend'`` (eval.attributes)."""
    out = []
    for ds in sets:
        by_class = ds.by_class if ds is not None else None
        class_emb = None
        if ds is None and stored is not None and classifier == "mean":
            names, emb = stored
            missing = [c for c in split.classes if c not in names]
            if missing:
                raise fail(
                    f"the run's stored class embeddings lack class(es): {', '.join(missing)}",
                    "pass --descriptions covering every class in the data",
                )
            class_emb = emb[[names.index(c) for c in split.classes]]
        if ds is not None:
            ds.require_classes(split.classes)
        clf: Any = build_classifier(
            source_model,
            split.classes,
            classifier,
            by_class,
            template=template,
            seed=seed,
            hierarchy=hierarchy,
            class_emb=class_emb,
            blend_weight=blend_weight,
        )
        if adapter is not None and class_emb is not None:
            assert stored is not None
            clf = adapted_classifier(adapter, stored, split.classes, clf.logit_scale)
            clf.inputs = split.adapter_inputs
        name = (
            ds.name
            if ds is not None
            else ("stored class embeddings" if class_emb is not None else classifier)
        )
        cal = None
        if calibration is not None:
            before = clf.logit_scale
            if isinstance(clf, AdaptedClassifier):
                clf.inputs = calibration.adapter_inputs
            clf.logit_scale = fit_logit_scale(clf, calibration.emb, calibration.labels.tolist())
            if isinstance(clf, AdaptedClassifier):
                clf.inputs = split.adapter_inputs
            cal = {"n": len(calibration.labels), "logit_scale_before": before, "logit_scale": clf.logit_scale}
        stacked = None
        if stacking is not None:
            clf, stacked = stack(
                clf, stacking.split.emb, stacking.split.labels.tolist(), stacking.mask, stacking.budget
            )
        scored = score_set(split, clf, name, n_boot=n_boot, seed=seed)
        if cal is not None:
            scored.metrics["calibration"] = cal
        if stacked is not None:
            scored.metrics["stacking"] = stacked
        scored.metrics["retrieval"] = retrieval_metrics(source_model, split, ds, seed, max_retrieval_texts)
        scored.metrics["descriptions"] = (
            {
                "name": ds.name,
                "hash": ds.hash,
                "path": str(ds.path) if ds.path else None,
                "count": sum(len(v) for v in ds.by_class.values()),
            }
            if ds is not None
            else None
        )
        out.append(scored)
    return out


def restrict(split: EmbeddedSplit, paths: list[Path]) -> EmbeddedSplit:
    """Keep only ``paths`` (both models must be scored on the same images to be compared)."""
    keep = {p: i for i, p in enumerate(split.paths)}
    idx = [keep[p] for p in paths if p in keep]
    return EmbeddedSplit(
        [split.paths[i] for i in idx],
        split.labels[idx],
        split.classes,
        split.emb[idx],
        split.errors,
        split.seconds,
    )
