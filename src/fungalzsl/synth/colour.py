"""Colour ramps (paper palette or random per image) and the optional pixel-level variations."""

from __future__ import annotations

import colorsys

import numpy as np

from fungalzsl.synth.preset import Variation


def hex_to_rgb(h: str) -> np.ndarray:
    """'#rrggbb' → float RGB in [0, 1]."""
    return np.array([int(h[i : i + 2], 16) / 255.0 for i in (1, 3, 5)])


def rgb_to_hex(rgb: np.ndarray) -> str:
    r, g, b = (round(min(max(float(c), 0.0), 1.0) * 255) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def ramp_colours(start: np.ndarray, end: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Linear interpolation start → end at each position in [0, 1] (the authors colour a structure by
    the height of its centre), shape (n, 3). ``start``/``end``: one colour (3,) or one per position (n, 3)."""
    t = np.clip(np.asarray(position, dtype=np.float64), 0.0, 1.0)[:, None]
    return start + (end - start) * t


def random_ramp(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random two-colour ramp: any hue, a nearby second hue, vivid enough to see on the background.

    Used by ``palette: random`` so that colour no longer tells the classes apart."""
    h0 = rng.uniform(0.0, 1.0)
    h1 = (h0 + rng.uniform(-0.12, 0.12)) % 1.0
    s0, s1 = rng.uniform(0.45, 1.0, size=2)
    v0, v1 = rng.uniform(0.55, 1.0, size=2)
    return np.array(colorsys.hsv_to_rgb(h0, s0, v0)), np.array(colorsys.hsv_to_rgb(h1, s1, v1))


def background_colour(variation: Variation, rng: np.random.Generator) -> np.ndarray:
    """The canvas colour: fixed (paper: white) or, for ``background: random``, a muted random tone
    either dark or light so the structures keep contrast."""
    if variation.background != "random":
        return hex_to_rgb(variation.background)
    h = rng.uniform(0.0, 1.0)
    s = rng.uniform(0.0, 0.3)
    v = rng.uniform(0.0, 0.25) if rng.uniform() < 0.5 else rng.uniform(0.85, 1.0)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def apply_pixel_variation(rgb: np.ndarray, variation: Variation, rng: np.random.Generator) -> np.ndarray:
    """Blur, grayscale and noise on an (H, W, 3) uint8 image; returns uint8. A no-op for the paper."""
    if variation.blur_radius <= 0 and not variation.grayscale and variation.noise_sd <= 0:
        return rgb
    from PIL import Image, ImageFilter

    out = rgb
    if variation.blur_radius > 0:
        radius = variation.blur_radius * rgb.shape[0]
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(radius)))
    if variation.grayscale:
        grey = np.asarray(Image.fromarray(out).convert("L"))
        out = np.repeat(grey[:, :, None], 3, axis=2)
    if variation.noise_sd > 0:
        noise = rng.normal(0.0, variation.noise_sd * 255.0, size=out.shape)
        out = np.clip(out.astype(np.float64) + noise, 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(out)
