"""Microscope optics for the photographic styles: how a field of view looks, whatever is in it.

Everything here is drawn from an image's *optics* stream only (:func:`fungalzsl.synth.style.style_rngs`),
never from the structures' stream and never from the class, so illumination, stain, background, noise
and artefacts have one distribution for every class: the class is carried by the structures alone.

Domain randomisation, per image:

* imaging: brightfield (dark walls on a bright field), phase-like (mid-grey field, dark walls with a
  bright halo) or darkfield (bright walls on a dark field);
* stain: unstained (grey, any faint tint), KOH (yellowish), lactophenol cotton blue (blue field, blue
  walls), a pink/magenta counterstain cast (pink field, purple walls); cells hyaline or pigmented
  (brown), independent of the stain;
* uneven illumination (a tilted field), vignetting, auto-exposure to a random brightness;
* defocus: a share of the structures in a blurred focal plane, sometimes the whole image soft;
* sensor noise (Gaussian, luminance and colour), JPEG encode/decode at a random quality;
* debris (dark specks), air bubbles (refractive rings), a scale bar, a counting-chamber grid.
"""

from __future__ import annotations

import colorsys
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

IMAGING = ("brightfield", "phase", "darkfield")
IMAGING_WEIGHTS = (0.6, 0.25, 0.15)
STAINS = ("unstained", "koh", "cotton-blue", "pink")
STAIN_WEIGHTS = (0.35, 0.25, 0.25, 0.15)


@dataclass
class Optics:
    """One field of view's look (colours are RGB in [0, 1]; lengths are fractions of the side)."""

    imaging: str
    stain: str
    background: np.ndarray
    wall: np.ndarray  # cell walls (tube edges, spore rims)
    lumen: np.ndarray  # the inside of tubes and cells
    lumen_alpha: float
    cell: np.ndarray  # the contents of spores (from nearly clear to densely pigmented)
    halo: np.ndarray  # phase halo / inner refraction ring
    halo_alpha: float
    wall_frac: float  # wall thickness as a fraction of the tube width
    defocus_share: float  # share of structures in the blurred focal plane
    defocus_sigma: float
    soft_sigma: float  # whole-image blur (0: sharp)
    illumination: tuple[float, float, float]  # tilt strength, tilt angle, vignetting
    exposure: float  # target mean brightness after auto-exposure
    noise_sd: float
    jpeg_quality: int  # 0: no JPEG round trip
    debris: int
    bubbles: int
    grid: tuple[float, float, float] | None  # spacing, angle, alpha of a counting-chamber grid
    scale_bar: int  # corner 0-3, or -1 for none


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)))


def _stain_colours(rng: np.random.Generator, stain: str) -> tuple[np.ndarray, np.ndarray]:
    """Field and wall colours of a brightfield view under ``stain``."""
    if stain == "koh":
        field = _hsv(rng.uniform(0.09, 0.18), rng.uniform(0.12, 0.45), rng.uniform(0.62, 0.97))
    elif stain == "cotton-blue":
        field = _hsv(rng.uniform(0.52, 0.66), rng.uniform(0.05, 0.35), rng.uniform(0.65, 0.97))
    elif stain == "pink":  # a magenta counterstain's cast (as in PAS- or Giemsa-like preparations)
        field = _hsv(rng.uniform(0.85, 1.0), rng.uniform(0.1, 0.4), rng.uniform(0.65, 0.97))
    else:  # grey with any faint tint (olive and green casts are common in real photographs)
        field = _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.22), rng.uniform(0.5, 0.95))
    if stain == "cotton-blue":  # the dye takes to the walls
        wall = _hsv(rng.uniform(0.58, 0.7), rng.uniform(0.45, 0.9), rng.uniform(0.15, 0.5))
    elif stain == "pink":  # walls take the dye purple
        wall = _hsv(rng.uniform(0.75, 0.9), rng.uniform(0.3, 0.8), rng.uniform(0.2, 0.55))
    else:
        wall = field * rng.uniform(0.12, 0.5)
    return field, wall


def sample_optics(rng: np.random.Generator) -> Optics:
    """Draw one field of view's optics (the draws do not depend on anything but ``rng``)."""
    imaging = str(rng.choice(IMAGING, p=IMAGING_WEIGHTS))
    stain = str(rng.choice(STAINS, p=STAIN_WEIGHTS))
    field, wall = _stain_colours(rng, stain)
    if rng.uniform() < 0.3:  # pigmented cells (melanised spores, brown hyphae)
        wall = 0.5 * wall + 0.5 * _hsv(
            rng.uniform(0.04, 0.12), rng.uniform(0.5, 0.9), rng.uniform(0.15, 0.45)
        )
    mix = rng.uniform(0.1, 0.55)
    halo, halo_alpha = np.minimum(field * rng.uniform(1.05, 1.3) + 0.08, 1.0), rng.uniform(0.0, 0.35)
    if imaging == "phase":
        field = field * rng.uniform(0.45, 0.75)
        halo, halo_alpha = np.minimum(field * 1.8 + 0.15, 1.0), rng.uniform(0.35, 0.7)
    elif imaging == "darkfield":
        bright = np.minimum(field / max(float(field.max()), 1e-6) * rng.uniform(0.6, 1.0), 1.0)
        field, wall = field * rng.uniform(0.03, 0.15), bright
        halo, halo_alpha = bright, rng.uniform(0.1, 0.4)
    lumen = field + (wall - field) * mix
    cell = field + (wall - field) * rng.uniform(0.15, 0.85)
    return Optics(
        imaging=imaging,
        stain=stain,
        background=field,
        wall=wall,
        lumen=lumen,
        lumen_alpha=float(rng.uniform(0.35, 0.85)),
        cell=cell,
        halo=halo,
        halo_alpha=float(halo_alpha),
        wall_frac=float(rng.uniform(0.14, 0.3)),
        defocus_share=float(rng.choice([0.0, rng.uniform(0.1, 0.6)], p=[0.4, 0.6])),
        defocus_sigma=float(rng.uniform(0.004, 0.035)),  # up to cells a thick mount leaves far out of focus
        soft_sigma=float(rng.uniform(0.001, 0.005)) if rng.uniform() < 0.35 else 0.0,
        illumination=(
            float(rng.uniform(0.0, 0.35)),
            float(rng.uniform(0, 2 * np.pi)),
            float(rng.uniform(0, 0.6)),
        ),
        exposure=float(rng.uniform(0.3, 0.8)),
        noise_sd=float(rng.uniform(0.003, 0.05)),
        jpeg_quality=int(rng.integers(30, 96)) if rng.uniform() < 0.7 else 0,
        debris=int(rng.poisson(rng.uniform(0, 25))),
        bubbles=int(rng.integers(1, 4)) if rng.uniform() < 0.15 else 0,
        grid=(
            (float(rng.uniform(0.12, 0.4)), float(rng.uniform(-0.2, 0.2)), float(rng.uniform(0.25, 0.7)))
            if rng.uniform() < 0.1
            else None
        ),
        scale_bar=int(rng.integers(0, 4)) if rng.uniform() < 0.2 else -1,
    )


def _colour(skia: Any, rgb: np.ndarray, alpha: float = 1.0) -> Any:
    r, g, b = (min(max(c, 0.0), 1.0) for c in np.asarray(rgb, dtype=np.float64).tolist())
    return skia.Color4f(r, g, b, float(alpha))


def draw_under(canvas: Any, optics: Optics, rng: np.random.Generator, size: int) -> None:
    """The field itself, a counting-chamber grid and debris: what lies below the structures."""
    import skia

    canvas.clear(_colour(skia, optics.background))
    if optics.grid is not None:
        spacing, angle, alpha = optics.grid
        paint = skia.Paint(
            AntiAlias=True, Style=skia.Paint.kStroke_Style, Color4f=_colour(skia, optics.wall, alpha)
        )
        paint.setStrokeWidth(max(size * 0.004, 0.8))
        canvas.save()
        canvas.rotate(float(np.degrees(angle)), size / 2, size / 2)
        step = spacing * size
        offset = rng.uniform(0, step, size=2)
        for k in range(-int(1.5 * size / step) - 1, int(1.5 * size / step) + 2):
            for triple in (0.0, 0.03 * step, 0.06 * step) if k % 4 == 0 else (0.0,):  # Neubauer triple lines
                t = k * step + triple
                canvas.drawLine(offset[0] + t, -size, offset[0] + t, 2 * size, paint)
                canvas.drawLine(-size, offset[1] + t, 2 * size, offset[1] + t, paint)
        canvas.restore()
    if optics.debris:
        n = optics.debris
        xy = rng.uniform(0, size, size=(n, 2)).tolist()
        r = (size * rng.uniform(0.002, 0.012, size=n)).tolist()
        shade = rng.uniform(0.3, 0.9, size=n).tolist()
        paint = skia.Paint(AntiAlias=True, Style=skia.Paint.kFill_Style)
        for (x, y), rad, a in zip(xy, r, shade):
            paint.setColor4f(_colour(skia, optics.wall, a))
            canvas.drawOval(skia.Rect.MakeXYWH(x, y, rad * 2, rad * (1.0 + a)), paint)


def draw_over(canvas: Any, optics: Optics, rng: np.random.Generator, size: int) -> None:
    """Air bubbles (a dark refractive rim, a bright inner ring) and a scale bar: above everything."""
    import skia

    ring = skia.Paint(AntiAlias=True, Style=skia.Paint.kStroke_Style)
    for _ in range(optics.bubbles):
        x, y = rng.uniform(0, size, size=2)
        r = size * rng.uniform(0.04, 0.15)
        ring.setStrokeWidth(r * 0.12)
        ring.setColor4f(_colour(skia, optics.wall * 0.6, 0.85))
        canvas.drawCircle(float(x), float(y), float(r), ring)
        ring.setStrokeWidth(r * 0.05)
        ring.setColor4f(_colour(skia, optics.halo, 0.7))
        canvas.drawCircle(float(x), float(y), float(r * 0.86), ring)
    if optics.scale_bar >= 0:
        length, height = size * rng.uniform(0.12, 0.3), max(size * rng.uniform(0.01, 0.025), 1.5)
        margin = size * 0.05
        right, bottom = optics.scale_bar % 2 == 1, optics.scale_bar >= 2
        x = size - margin - length if right else margin
        y = size - margin - height if bottom else margin
        light = rng.uniform() < 0.5
        bar = skia.Paint(AntiAlias=True, Color4f=skia.Color4f(*(([1.0] * 3) if light else [0.02] * 3), 1.0))
        canvas.drawRect(skia.Rect.MakeXYWH(float(x), float(y), float(length), float(height)), bar)


_GRIDS: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
_BANKS: dict[int, np.ndarray] = {}
_BANK_PAD = 97


def _noise_bank(size: int) -> np.ndarray:
    """(size + pad, size + pad, 3) float32: two planes of standard normals (colour, luminance), the
    same in every process (fixed seed), and a plane of ones that carries the rounding offset."""
    if size not in _BANKS:
        _BANKS.clear()
        rng = np.random.default_rng(np.random.SeedSequence([0x5E5, size]))
        side = size + _BANK_PAD
        bank = np.ones((side, side, 3), dtype=np.float32)
        bank[:, :, :2] = rng.standard_normal((side, side, 2), dtype=np.float32)
        _BANKS[size] = bank
    return _BANKS[size]


def _coords(size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Pixel-centre coordinates c in [-1, 1] — x as a (1, 3·size) row (each value three times, for
    RGB), y as a (size, 1) column — and the mean of c², cached per size. Flat rows of RGB so that
    every pass over the field runs along long contiguous rows: numpy broadcasts over a short
    trailing axis (RGB's 3) ~5x slower."""
    if size not in _GRIDS:
        _GRIDS.clear()
        c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
        _GRIDS[size] = (np.repeat(c, 3)[None, :], c[:, None], float(np.mean(c.astype(np.float64) ** 2)))
    return _GRIDS[size]


def _illumination(optics: Optics, size: int, mean_rgb: float) -> np.ndarray:
    """(size, 3·size) float32, equal over RGB: a tilted field times a vignette, auto-exposed.

    The camera brings the frame's mean to its own target, whatever the content (the field is smooth,
    so mean(rgb·field) ≈ mean(rgb)·mean(field)). The field, (1 + a·x + b·y)·(1 + k·(x² + y²)), is
    built from rows and columns: two broadcast sums and a product, three passes over the image. Its
    mean is known without a pass: the grid is symmetric, so the odd terms average to zero and it is
    1 + 2k·mean(c²)."""
    x, y, m2 = _coords(size)
    tilt, angle, vignette = optics.illumination
    k = -0.5 * vignette
    gain = optics.exposure / max(mean_rgb / 255 * (1.0 + 2.0 * k * m2), 1e-3)  # in 0-255 units
    a, b, f32 = gain * tilt * np.cos(angle), gain * tilt * np.sin(angle), np.float32
    field = (f32(a) * x + f32(gain)) + f32(b) * y  # row + column: one pass
    field *= (f32(k) * (x * x) + f32(1.0)) + f32(k) * (y * y)  # one for the sum, one for the product
    return field


def soft_factor(soft_sigma: float, size: int) -> int:
    """By how much a soft lens's picture is box-reduced before it is scaled back up bilinearly (a blur
    of σ ≈ f/2 px); 1 for a sharp one. ``style.style_image`` applies it to the drawn canvas."""
    return int(np.clip(round(2 * soft_sigma * size), 2, 16)) if soft_sigma > 0 else 1


def finish(rgb: np.ndarray, optics: Optics, rng: np.random.Generator) -> np.ndarray:
    """The camera: illumination field, auto-exposure, sensor noise, JPEG; uint8 → uint8 (the soft
    lens is applied where the picture is drawn: :func:`soft_factor`)."""
    from PIL import Image

    size = rgb.shape[0]
    # In 0-255 units throughout, so that the image takes as few full passes as possible.
    mean_rgb = float(rgb.sum(dtype=np.uint64)) / rgb.size  # exact, and ~3x faster than rgb.mean()
    field = _illumination(optics, size, mean_rgb).reshape(size, size, 3)
    # Sensor noise: a window of a fixed noise field at a random offset and sign (drawing 3·size²
    # normals per image would cost more than the whole drawing): a colour part (one normal per pixel
    # times a random tint), a stronger luminance part and the rounding offset, mixed into RGB by one
    # (3, 3) matrix product, the cheapest full pass numpy has.
    oy, ox = (int(v) for v in rng.integers(0, _BANK_PAD, size=2))
    sign = 1.0 if rng.uniform() < 0.5 else -1.0
    mix = np.empty((3, 3), dtype=np.float32)
    mix[0] = rng.uniform(-1, 1, size=3) * optics.noise_sd * 0.4 * 255
    mix[1] = sign * optics.noise_sd * 255
    mix[2] = 0.5  # rounding: astype truncates
    img = _noise_bank(size)[oy : oy + size, ox : ox + size] @ mix
    img += np.multiply(rgb, field, out=field)
    np.clip(img, 0.0, 255.0, out=img)
    out = img.astype(np.uint8)
    if optics.jpeg_quality:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=optics.jpeg_quality)
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    return np.ascontiguousarray(out)
