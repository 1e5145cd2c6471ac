"""One image-backbone pass per image batch and frozen image tower, for a whole evaluation (or several).

An evaluation of a run embeds its images twice: once with the fine-tuned model and once with the model
it started from (``baseline``). When the image backbone stayed frozen in training (cpu-default trains
``lite``'s projection heads only), both models run the very same backbone on the very same pixels and
differ only in the projection. :class:`ImageStore` keeps the backbone's output per (backbone, batch of
pixels), and :func:`cached_image` wraps a model so its ``encode_image`` asks the store first; the cheap
head runs per call, on the model's own weights.

What is keyed, and why it is safe: a SHA-256 of the image backbone's tensors (every image layer group,
with the model class and input size) and a SHA-256 of the pixel batch (shape, dtype and bytes). A
backbone that trained hashes differently, so a fine-tuned tower never shares with its start. Only
backends that split their image tower above the whole backbone (``cache_split("image", all) == all``,
``image_trunk`` overridden) are cached; any other model is used as it is. ``image_head(image_trunk(x,
n), n)`` is ``encode_image(x)`` for those backends (the same layers in the same order): the results are
the numbers the uncached model gives (tests/test_eval_imagecache.py)."""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from fungalzsl.eval.textcache import tensor_digest


class ImageStore:
    """Image-backbone outputs per (backbone key, pixel-batch digest); ``encoded``: images that ran."""

    def __init__(self) -> None:
        self.rows: dict[tuple[Any, str], torch.Tensor] = {}
        self.encoded = 0


def backbone_key(model: Any) -> tuple[Any, int] | None:
    """(store key, split) of ``model``'s whole image backbone, or None when it cannot be run apart."""
    from fungalzsl.models.base import TwoTowerModel

    groups = getattr(model, "layer_groups", None)
    trunk = getattr(type(model), "image_trunk", None)
    if groups is None or trunk is None or trunk is TwoTowerModel.image_trunk:
        return None
    layers = groups()["image"]
    n = len(layers)
    if not n or model.cache_split("image", n) != n:
        return None
    return (type(model).__name__, getattr(model, "image_size", None), tensor_digest(layers)), n


def _pixels_digest(x: torch.Tensor) -> str:
    h = hashlib.sha256(f"{tuple(x.shape)}|{x.dtype}".encode())
    h.update(x.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class CachedImageModel:
    """``model`` with ``encode_image`` answered from an :class:`ImageStore`; everything else is the model's."""

    def __init__(self, model: Any, store: ImageStore, key: tuple[Any, int]):
        self._model, self._store = model, store
        self._key, self._split = key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def eval(self) -> CachedImageModel:
        self._model.eval()
        return self

    @torch.no_grad()
    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        key = (self._key, _pixels_digest(x))
        h = self._store.rows.get(key)
        if h is None:
            h = self._model.image_trunk(x, self._split)
            self._store.rows[key] = h
            self._store.encoded += len(x)
        return self._model.image_head(h, self._split)


def cached_image(model: Any, store: ImageStore | None) -> Any:
    """``model`` answering ``encode_image`` from ``store`` (``None``, or a backbone that cannot be run
    apart: the model itself)."""
    if store is None or isinstance(model, CachedImageModel):
        return model
    key = backbone_key(model)
    return model if key is None else CachedImageModel(model, store, key)
