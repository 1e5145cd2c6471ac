"""Segmentation masks of a scene: a class label per pixel and an instance id per pixel.

The generator knows every structure it draws, so the masks are rasterised from the very strokes of the
image (:class:`~fungalzsl.synth.render.PixelLayout`, skia, anti-aliased), one structure at a time, into
a single-channel coverage layer: drawn opaque white on black, a pixel's value is the fraction of it the
structure covers (0–255). Then, per pixel:

* **instance** = the structure with the largest coverage there (on a tie the one drawn later, which is
  on top in the image); ids are 1 + the structure's index in draw order (the image's own structures
  first, then the overlap ones), 0 = background;
* **label** = 1 + the class index of that structure (paper: 1 spore, 2 hyphae, 3 mycelium): the class of
  the *structure*, not of the image — the spores in a hyphae image are 1, the hyphae in a mycelium
  image are 2 even in mycelium colours;
* both are 0 where the total coverage (union of all structures, 1 − Π(1 − c_s)) is below
  :data:`COVERAGE_THRESHOLD`.

Taking the class of the largest single coverage means the label and the instance never disagree.
The threshold is low on purpose: at 224 px most mycelium twigs are thinner than a pixel, skia draws
them with an opacity equal to their width, and a 0.3 px twig is still clearly visible in the image.
"""

from __future__ import annotations

import io

import numpy as np

from fungalzsl.errors import fail
from fungalzsl.synth.geometry import Scene
from fungalzsl.synth.render import PixelLayout

# A pixel is foreground when structures cover at least this fraction of it (25/255 ≈ 0.1). In the image
# such a pixel differs from the background by ≥ 0.1 · 0.8 (branch alpha) · the colour's contrast.
COVERAGE_THRESHOLD = 25 / 255
LABEL_BACKGROUND = 0
MAX_INSTANCES = 65535  # 16-bit instance PNG


def label_map(class_names: list[str]) -> dict[str, int]:
    """Mask value of each class: 0 background, then 1, 2, … in the preset's class order."""
    return {"background": LABEL_BACKGROUND, **{c: i + 1 for i, c in enumerate(class_names)}}


def render_masks(scene: Scene, size: int, class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(labels (size, size) uint8, instances (size, size) uint16) of one scene; see the module doc."""
    import skia

    n = len(scene.struct_kind)
    if n > MAX_INSTANCES:
        raise fail(
            f"an image has {n} structures, more than the {MAX_INSTANCES} ids a 16-bit instance mask holds",
            "lower n_structures (or the overlap counts) in the preset",
        )
    layout = PixelLayout(scene, size)
    scratch = np.zeros((size, size), dtype=np.uint8)
    surface = skia.Surface(scratch, colorType=skia.kAlpha_8_ColorType, alphaType=skia.kPremul_AlphaType)
    canvas = surface.getCanvas()
    white = skia.Color4f(1.0, 1.0, 1.0, 1.0)
    disc = skia.Paint(AntiAlias=True, Style=skia.Paint.kFill_Style, Color4f=white)
    line = skia.Paint(AntiAlias=True, Style=skia.Paint.kStroke_Style, Color4f=white)

    best = np.zeros((size, size), dtype=np.uint8)  # largest single coverage so far
    inst = np.zeros((size, size), dtype=np.uint16)
    uncovered = np.ones((size, size), dtype=np.float32)  # Π(1 − c_s)
    for s in range(n):
        box = _box(layout, s, size)
        if box is None:
            continue
        layout.draw_structure(canvas, s, disc, line)
        ys, xs = box
        cov = scratch[ys, xs]
        b = best[ys, xs]
        # >=: a later structure wins ties, as it is the one on top in the image.
        win = (cov >= b) & (cov > 0)
        np.maximum(b, cov, out=b)
        np.copyto(inst[ys, xs], np.uint16(s + 1), where=win)
        u = uncovered[ys, xs]
        u *= 1.0 - cov.astype(np.float32) * np.float32(1 / 255)
        scratch[ys, xs] = 0  # the next structure starts on black (only this box was drawn on)
    del canvas, surface
    # Float32 products are exactly reproducible (IEEE, elementwise), so the masks are deterministic.
    inst[(1.0 - uncovered) < np.float32(COVERAGE_THRESHOLD)] = 0
    index = {c: i + 1 for i, c in enumerate(class_names)}
    lut = np.zeros(n + 1, dtype=np.uint8)
    lut[1:] = [index[k] for k in scene.struct_kind]
    return lut[inst], inst


def _box(layout: PixelLayout, s: int, size: int) -> tuple[slice, slice] | None:
    """Pixel rows/columns structure ``s`` can touch: its extent, padded by its widest stroke's square
    cap (≤ 0.71 w beyond an end) and a pixel of anti-aliasing. Drawing never leaves this box, so only the
    box has to be read and cleared."""
    seg, w = layout.segments(s)
    d = layout.disc(s)
    xs, ys = [], []
    if seg.shape[0]:
        pad = 0.75 * float(w.max()) + 2.0
        xs += [
            float(min(seg[:, 0].min(), seg[:, 2].min())) - pad,
            float(max(seg[:, 0].max(), seg[:, 2].max())) + pad,
        ]
        ys += [
            float(min(seg[:, 1].min(), seg[:, 3].min())) - pad,
            float(max(seg[:, 1].max(), seg[:, 3].max())) + pad,
        ]
    if d is not None:
        cx, cy, r = d
        xs += [cx - r - 2.0, cx + r + 2.0]
        ys += [cy - r - 2.0, cy + r + 2.0]
    if not xs:
        return None
    x0, x1 = max(int(np.floor(min(xs))), 0), min(int(np.ceil(max(xs))) + 1, size)
    y0, y1 = max(int(np.floor(min(ys))), 0), min(int(np.ceil(max(ys))) + 1, size)
    if x0 >= x1 or y0 >= y1:
        return None  # wholly outside the canvas
    return slice(y0, y1), slice(x0, x1)


# zlib's run-length strategy: masks are long runs of one value, and Z_RLE makes them ~30% smaller than
# the default strategy at the same speed (measured at 224 px). Pillow passes it to zlib as is.
_Z_RLE = 3


def encode_masks(labels: np.ndarray, instances: np.ndarray) -> tuple[bytes, bytes]:
    """PNG bytes: labels as 8-bit grey, instances as 16-bit grey."""
    from PIL import Image

    out = []
    for arr, mode in ((labels, "L"), (instances.astype("<u2"), "I;16")):
        buf = io.BytesIO()
        image = Image.frombuffer(
            mode, arr.shape[::-1], np.ascontiguousarray(arr).tobytes(), "raw", mode, 0, 1
        )
        image.save(buf, format="PNG", compress_level=1, compress_type=_Z_RLE)
        out.append(buf.getvalue())
    return out[0], out[1]
