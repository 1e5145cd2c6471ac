"""From what a user passes (files, folders, glob patterns, PIL images) to one ``Prediction`` per image.

The PyTorch and the ONNX Runtime classifiers both go through :func:`classify`, so they accept the same
inputs, name them the same way and report the same failures; they differ only in how an image is
preprocessed and how a batch of preprocessed images becomes class probabilities. Torch-free."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from fungalzsl.images import ImageReadError, expand_inputs, load_image, to_rgb
from fungalzsl.predict.result import Prediction

Pixels = TypeVar("Pixels")  # one preprocessed image: a torch tensor or a NumPy array
Images = Sequence[str | Path | Image.Image] | str | Path | Image.Image


@dataclass
class Input:
    """One image to classify: the name its result carries, where to read it, or why there is nothing."""

    name: str
    source: Image.Image | Path | None
    error: str | None = None


def gather_inputs(images: Images) -> list[Input]:
    """Expand files, folders (recursively), glob patterns and PIL images into one ``Input`` per image,
    in the order given; an argument that matches nothing becomes an ``Input`` carrying the reason."""
    if isinstance(images, (str, Path, Image.Image)):
        images = [images]
    out: list[Input] = []
    for obj in images:
        if isinstance(obj, Image.Image):
            out.append(Input(getattr(obj, "filename", "") or "<image>", obj))
        else:
            paths, problems = expand_inputs([obj])
            out.extend(Input(str(p), p) for p in paths)
            out.extend(Input(msg.split(":")[0], None, msg) for msg in problems)
    return out


def classify(
    images: Images,
    preprocess: Callable[[Image.Image], Pixels],
    probabilities: Callable[[list[Pixels]], Any],
    classes: Sequence[str],
    batch_size: int = 32,
) -> list[Prediction]:
    """Classify ``images`` in batches of ``batch_size``: each readable image is decoded to RGB, passed
    through ``preprocess``, and scored with ``probabilities`` (a list of preprocessed images → a (B, C)
    array). An image that cannot be read or preprocessed gets an ``error`` and the rest go on."""
    items = gather_inputs(images)
    results = [Prediction(path=item.name, error=item.error) for item in items]
    pending: list[tuple[int, Pixels]] = []

    def score() -> None:
        rows = probabilities([x for _, x in pending])
        for (i, _), row in zip(pending, rows):
            results[i].probabilities = {c: float(p) for c, p in zip(classes, row)}
            results[i].prediction = classes[int(row.argmax())]
        pending.clear()

    for i, item in enumerate(items):
        if item.error is not None:
            continue
        try:
            src = item.source
            im = to_rgb(src) if isinstance(src, Image.Image) else load_image(src)  # type: ignore[arg-type]
            pending.append((i, preprocess(im)))
        except ImageReadError as e:
            results[i].error = str(e)
        except Exception as e:  # a transform that chokes on a degenerate image
            results[i].error = f"{item.name}: could not preprocess ({e})"
        if len(pending) == batch_size:
            score()
    if pending:
        score()
    return results
