"""What an evaluation reads and embeds before it scores: the model, the labelled images, the
description sets (:func:`load_inputs`), the embedded split with what an adapter needs
(:func:`embed_inputs`) and calibrated stacking's seen-class split (:func:`stacking_inputs`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fungalzsl.errors import fail
from fungalzsl.eval.imagecache import ImageStore, cached_image
from fungalzsl.eval.scoring import EmbeddedSplit, Stacking, embed_split
from fungalzsl.eval.sources import (
    ModelSource,
    align_labels,
    dataset_classes,
    load_eval_images,
    load_source,
    stored_class_embeddings,
    training_description_path,
)
from fungalzsl.progress import step
from fungalzsl.text.records import DescriptionSet, load_description_set

# Classifiers that need only class names (chils uses descriptions for its parents when it has them).
NAME_ONLY = ("template", "waffle", "chils")


@dataclass
class EvalInputs:
    """What an evaluation reads before any embedding: the model, the images and the description sets."""

    source: ModelSource
    found: Any  # eval.data's labelled image list (paths, labels)
    classes: list[str]
    sets: list[DescriptionSet | None]
    stored: tuple[list[str], torch.Tensor] | None
    training_descriptions: Path | None


def load_inputs(
    run_or_spec: Any,
    data: str | Path,
    split: str | None,
    descriptions: Sequence[str | Path] | None,
    images: str | Path | None,
    classifier: str,
    device: str,
) -> EvalInputs:
    """Load the model, the split's images and the description sets to score. Without
    ``descriptions``: ``[None]`` (stored embeddings or class names only) or the run's training set."""
    source = load_source(run_or_spec, device=device)
    found = load_eval_images(data, split, images)
    run_classes = source.config.get("classes")
    classes = dataset_classes(data, found, run_classes if isinstance(run_classes, list) else None)
    found = align_labels(found, classes)
    sets: list[DescriptionSet | None] = [load_description_set(p) for p in descriptions or []]
    stored = stored_class_embeddings(source)
    if not sets:
        train_desc = training_description_path(source)
        if stored is None or classifier != "mean":
            if train_desc is not None:
                sets = [load_description_set(train_desc)]
            elif classifier not in NAME_ONLY:
                raise fail(
                    "no descriptions to build class embeddings from",
                    "pass --descriptions FILE.jsonl (or --classifier template)",
                )
        if not sets:
            sets = [None]
    return EvalInputs(source, found, classes, sets, stored, training_description_path(source))


def embed_inputs(
    inputs: EvalInputs,
    data: str | Path,
    split: str | None,
    images: str | Path | None,
    calibrate_on: str | None,
    batch_size: int,
    image_store: ImageStore | None = None,
) -> tuple[EmbeddedSplit, EmbeddedSplit | None]:
    """Embed the evaluated split, and the calibration split when ``calibrate_on`` names one
    (``image_store``: image-backbone outputs shared with the start model, fungalzsl.eval.imagecache)."""
    model = cached_image(inputs.source.model, image_store)
    split_emb = embed_split(model, inputs.found.paths, inputs.found.labels, inputs.classes, batch_size)
    with_adapter_inputs(split_emb, model, inputs.source.adapter, batch_size)
    if not calibrate_on:
        return split_emb, None
    if calibrate_on == split:
        raise fail(f"--calibrate-on {calibrate_on} is the split being evaluated", "calibrate on val")
    held = align_labels(load_eval_images(data, calibrate_on, images), inputs.classes)
    cal = embed_split(model, held.paths, held.labels, inputs.classes, batch_size)
    return split_emb, with_adapter_inputs(cal, model, inputs.source.adapter, batch_size)


def with_adapter_inputs(split: EmbeddedSplit, model: Any, adapter: Any, batch_size: int) -> EmbeddedSplit:
    """Add the inputs of an adapter fitted on backbone features or 8 views (a second pass over the images)."""
    if adapter is None or not adapter.needs_own_inputs:
        return split
    from fungalzsl.fewshot.features import embed_paths

    with step(
        f"adapter features of {len(split.paths)} images ({adapter.features}, {adapter.views} views)", now=True
    ):
        views, _kept, errors = embed_paths(model, split.paths, adapter.views, batch_size)
    if errors:
        raise fail(f"an image changed while it was evaluated ({errors[0]})", "evaluate again")
    split.adapter_inputs = views.pick(adapter.features, adapter.views)
    return split


def stacking_inputs(inputs: EvalInputs, budget: float, batch_size: int) -> Stacking:
    """Calibrated stacking's seen-class split: the validation images of the run's own training data
    (RUN/config.json ``data``), its trained classes only, embedded by the evaluated model."""
    from fungalzsl.eval.gzsl import check_budget, seen_mask

    budget = check_budget(budget)
    cfg = inputs.source.config
    if inputs.source.run_dir is None or not isinstance(cfg.get("classes"), list):
        raise fail("--stack-budget needs a fine-tuned run (its trained classes)", "pass a run directory")
    mask = seen_mask(inputs.classes, cfg["classes"])
    data = Path(str(cfg.get("data") or ""))
    if not (data / "val").is_dir():
        raise fail(
            f"--stack-budget: the run's training data {data} has no val split on disk",
            "restore the run's data folder (RUN/config.json 'data')",
        )
    val = load_eval_images(data, "val")
    keep = [
        i
        for i, y in enumerate(val.labels)
        if val.classes[y] in inputs.classes and mask[inputs.classes.index(val.classes[y])]
    ]
    if not keep:
        raise fail(
            f"--stack-budget: {data}/val has no images of the run's trained classes", "check the run's data"
        )
    paths = [val.paths[i] for i in keep]
    labels = [inputs.classes.index(val.classes[val.labels[i]]) for i in keep]
    return Stacking(embed_split(inputs.source.model, paths, labels, inputs.classes, batch_size), mask, budget)
