"""Training augmentations that help a model trained on drawings transfer to photographs: random resized
crops, flips and quarter turns, colour jitter, greyscale, blur and sensor noise.

Every augmented image is a pure function of (seed, image index, view): view ``v`` of image ``i`` draws
from ``numpy.random.default_rng([seed, i, v])``. So the frozen-prefix cache can hold ``views`` augmented
views per image, computed once, and an epoch picks one view per image (:func:`epoch_views`); training
from pixels draws the same views, so cached and uncached runs see the same inputs."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from fungalzsl.images import ImageReadError, load_image

# PIL's eight symmetries of the square: a micrograph has no "up", so every one is a valid view.
_DIHEDRAL: tuple[tuple[Image.Transpose, ...], ...] = (
    (),
    (Image.Transpose.FLIP_LEFT_RIGHT,),
    (Image.Transpose.FLIP_TOP_BOTTOM,),
    (Image.Transpose.ROTATE_90,),
    (Image.Transpose.ROTATE_180,),
    (Image.Transpose.ROTATE_270,),
    (Image.Transpose.TRANSPOSE,),
    (Image.Transpose.TRANSVERSE,),
)


def crop_box(
    width: int, height: int, scale: Sequence[float], ratio: Sequence[float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop covering ``scale`` of the area at aspect ``ratio``
    (torchvision's RandomResizedCrop rule: 10 tries, then the centre crop at the nearest ratio)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    aspect = width / height
    if aspect < min(ratio):
        w, h = width, round(width / min(ratio))
    elif aspect > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def augment_image(im: Image.Image, cfg: Any, size: int, rng: np.random.Generator) -> Image.Image:
    """One augmented view of ``im`` under ``cfg`` (train.settings.AugmentConfig); ``size``: the
    model's input side, the output size of the crop."""
    if cfg.crop_scale is not None:
        top, left, h, w = crop_box(im.width, im.height, cfg.crop_scale, cfg.crop_ratio, rng)
        im = TF.resized_crop(im, top, left, h, w, [size, size], InterpolationMode.BICUBIC, antialias=True)
    if cfg.flip:
        for op in _DIHEDRAL[int(rng.integers(0, len(_DIHEDRAL)))]:
            im = im.transpose(op)
    if cfg.jitter > 0:
        lo, hi = max(0.0, 1 - cfg.jitter), 1 + cfg.jitter
        im = TF.adjust_brightness(im, rng.uniform(lo, hi))
        im = TF.adjust_contrast(im, rng.uniform(lo, hi))
        im = TF.adjust_saturation(im, rng.uniform(lo, hi))
    if cfg.hue > 0:
        im = TF.adjust_hue(im, rng.uniform(-cfg.hue, cfg.hue))
    if rng.uniform() < cfg.greyscale:
        im = TF.rgb_to_grayscale(im, num_output_channels=3)
    if rng.uniform() < cfg.blur:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(*cfg.blur_sigma)))
    if rng.uniform() < cfg.noise:
        a = np.asarray(im, dtype=np.float32)
        a = a + rng.normal(0.0, rng.uniform(*cfg.noise_sd) * 255.0, a.shape).astype(np.float32)
        im = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "RGB")
    return im


def epoch_views(seed: int, epoch: int, n: int, views: int) -> torch.Tensor:
    """Which of the ``views`` augmented views each of ``n`` images shows in ``epoch`` (seeded by the
    run's seed and the epoch alone, so every DDP rank and a resumed run pick the same)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 7_919)
    return torch.randint(0, views, (n,), generator=gen)


class AugmentedImages(Dataset):
    """View ``j // n`` of image ``j % n`` (``n`` = len(paths)), augmented then preprocessed; an
    unreadable file yields its error instead of a tensor (the ``collate_images`` protocol)."""

    def __init__(
        self,
        paths: Sequence[Path],
        preprocess: Callable[[Any], torch.Tensor],
        cfg: Any,
        size: int,
        seed: int,
        views: int,
    ):
        self.paths, self.preprocess, self.cfg = list(paths), preprocess, cfg
        self.size, self.seed, self.views = size, seed, views

    def __len__(self) -> int:
        return len(self.paths) * self.views

    def __getitem__(self, j: int) -> tuple[int, torch.Tensor | None, str | None]:
        i, v = j % len(self.paths), j // len(self.paths)
        try:
            im = load_image(self.paths[i])
        except ImageReadError as e:
            return j, None, str(e)
        rng = np.random.default_rng([self.seed, i, v])
        return j, self.preprocess(augment_image(im, self.cfg, self.size, rng)), None
