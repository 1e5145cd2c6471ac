"""Rasterisers for a :class:`~fungalzsl.synth.geometry.Scene`, and PNG encoding.

* ``fast`` — skia (anti-aliased), on a BGRA canvas (skia's native order). Segments are batched into
  one path per (structure, width bucket) and the path is built straight from numpy bytes in skia's
  serialisation format, so a 10,000-segment mycelium costs ~60 draw calls instead of 10,000 Python
  calls.
* ``matplotlib`` — the authors' way (one ``ax.plot`` per segment, ``Circle`` patches, Agg), kept as the
  slow reference that draws the same geometry.

Both draw at the target size directly; line widths scale with the image (see ``preset.REFERENCE_PX``).
One visible difference: within one skia path overlapping strokes do not darken each other, while
matplotlib's separate alpha-0.8 lines do where they cross."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any, Literal

import numpy as np

from fungalzsl.synth.geometry import Scene
from fungalzsl.synth.preset import REFERENCE_PX

Renderer = Literal["fast", "matplotlib"]
# Points on the reference canvas → pixels at size S: width_pt · (300 / 72) · S / REFERENCE_PX.
_PT_PER_SIDE = REFERENCE_PX * 72.0 / 300.0
# Widths within 4% of each other share one path, and below 1 px widths are rounded to 1/8 px (skia
# draws such lines as hairlines whose opacity scales with the width, so this is a ≤6% change in the
# opacity of a sub-pixel twig): invisible, and it keeps draw calls few (~60 per mycelium at 224 px).
_WIDTH_STEP = np.log(1.04)
_THIN_PX, _THIN_GRID = 1.0, 8.0


def quantize_width(wpx: np.ndarray) -> np.ndarray:
    """The width each segment is drawn with (pixels)."""
    return width_from_code(width_code(wpx))


def width_code(wpx: np.ndarray) -> np.ndarray:
    """A small integer per drawn width, increasing with it: 1..8 for k/8 px below 1 px, then
    9 + j for 1.04^j px. Segments with one code share one path."""
    wpx = np.asarray(wpx, dtype=np.float32)
    code = np.rint(wpx * np.float32(_THIN_GRID))
    np.clip(code, 1, _THIN_GRID, out=code)
    thick = wpx >= _THIN_PX
    if thick.any():  # rare at 224 px, the rule at full resolution
        code[thick] = _THIN_GRID + 1 + np.maximum(np.rint(np.log(wpx[thick]) / np.float32(_WIDTH_STEP)), 0)
    return code.astype(np.int64)


def width_from_code(code: np.ndarray) -> np.ndarray:
    """The drawn width (pixels) of each :func:`width_code`."""
    code = np.asarray(code, dtype=np.float64)
    thick = np.exp((code - _THIN_GRID - 1) * _WIDTH_STEP)
    return np.where(code <= _THIN_GRID, code / _THIN_GRID, thick)


# matplotlib patches have a 1 pt edge in the face colour (the authors' discs too): it widens a disc
# by half the edge width, which both renderers reproduce at every size.
DISC_EDGE_PT = 1.0


def width_px(width_pt: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(width_pt, dtype=np.float64) * size / _PT_PER_SIDE


def _path_bytes(pts32: np.ndarray) -> bytes:
    """skia's serialised path (version 5, winding fill): header, float32 points, one move+line per
    segment. ``pts32`` is (n, 4) float32 pixel coordinates, C-contiguous."""
    n = pts32.shape[0]
    header = struct.pack("<4i", 5, 2 * n, 0, 2 * n)
    return b"".join((header, pts32.data, b"\x00\x01" * n, b"\0" * (-2 * n % 4)))  # verbs: move, line


def render_skia(scene: Scene, size: int) -> np.ndarray:
    """Rasterise with skia; returns (size, size, 3) uint8 RGB."""
    buf = np.empty((size, size, 4), dtype=np.uint8)
    draw_skia(scene, size, buf)
    return np.ascontiguousarray(buf[:, :, 2::-1])


def draw_skia(scene: Scene, size: int, buf: np.ndarray) -> None:
    """Rasterise into ``buf``, a (size, size, 4) uint8 **BGRA** array (opaque: alpha ends up 255).

    BGRA is skia's native order on little-endian machines: its hand-tuned blitters serve it, while
    RGBA goes through the generic raster pipeline, 2.3x slower on a mycelium's 10,000 hairlines."""
    import skia

    surface = skia.Surface(buf, colorType=skia.kBGRA_8888_ColorType, alphaType=skia.kPremul_AlphaType)
    canvas = surface.getCanvas()
    bg = scene.background.tolist()
    canvas.clear(skia.Color4f(bg[0], bg[1], bg[2], 1.0))
    layout = PixelLayout(scene, size)
    disc = skia.Paint(AntiAlias=True, Style=skia.Paint.kFill_Style)
    line = skia.Paint(AntiAlias=True, Style=skia.Paint.kStroke_Style, StrokeCap=skia.Paint.kSquare_Cap)
    alpha = float(scene.line_alpha)
    for s, (r, g, b) in enumerate(np.asarray(scene.struct_rgb, dtype=np.float64).tolist()):
        disc.setColor4f(skia.Color4f(r, g, b, 1.0))
        line.setColor4f(skia.Color4f(r, g, b, alpha))
        layout.draw_structure(canvas, s, disc, line)
    del canvas, surface


class PixelLayout:
    """A scene's geometry in pixels, grouped for drawing: the one place both the image and the masks
    (``synth.masks``) take their strokes from, so the two rasterise exactly the same shapes."""

    def __init__(self, scene: Scene, size: int):
        self.scene, self.size = scene, size
        n_struct = len(scene.struct_kind)
        self.edge = float(width_px(DISC_EDGE_PT, size))
        # Discs: centre and radius in pixels (y down), as plain floats for the draw calls.
        radius = np.asarray(scene.circle_r, dtype=np.float64)
        cx = np.asarray(scene.circle_xy, dtype=np.float64).reshape(-1, 2) * size
        self._discs = [
            (x, size - y, r * size + 0.5 * self.edge) if r > 0 else None
            for (x, y), r in zip(cx.tolist(), radius.tolist())
        ]
        if scene.n_segments == 0:
            self.seg = np.zeros((0, 4), np.float32)
            self.starts = self.ends = np.zeros(0, np.int64)
            self.group_width = self.wq = np.zeros(0)
            self._groups = [[] for _ in range(n_struct)]
            return
        # Unit square, y up → pixels, y down.
        seg = scene.seg_xy.astype(np.float32) * np.float32(size)
        seg[:, 1] = size - seg[:, 1]
        seg[:, 3] = size - seg[:, 3]
        # Group segments by (structure, drawn width) once. Within a structure the colour is the same,
        # so reordering its segments does not change the picture. One integer key; when it fits in
        # 16 bits numpy's stable sort is a radix sort (~15 µs for a 10,000-segment mycelium).
        code = width_code(width_px(scene.seg_width, size))
        span = int(code.max()) + 1
        key = np.asarray(scene.seg_struct, dtype=np.int64) * span + code
        order = np.argsort(key.astype(np.uint16) if key.max() < 65536 else key, kind="stable")
        self.seg = np.take(seg, order, axis=0)
        key = np.take(key, order)
        cut = np.flatnonzero(np.diff(key) != 0) + 1
        self.starts = np.concatenate([[0], cut])
        self.ends = np.concatenate([cut, [key.size]])
        self.group_width = width_from_code(key[self.starts] % span)
        self.wq = np.repeat(self.group_width, self.ends - self.starts)
        # Per structure: its groups as (first, end, width), ready for the draw loop.
        bounds = np.searchsorted(key[self.starts] // span, np.arange(n_struct + 1)).tolist()
        groups = list(zip(self.starts.tolist(), self.ends.tolist(), self.group_width.tolist()))
        self._groups = [groups[bounds[s] : bounds[s + 1]] for s in range(n_struct)]

    def disc(self, s: int) -> tuple[float, float, float] | None:
        """Centre x, y and radius (pixels) of structure ``s``'s disc, or None."""
        return self._discs[s]

    def segments(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Structure ``s``'s segments (n, 4) in pixels and their drawn widths (n,)."""
        groups = self._groups[s]
        if not groups:
            return self.seg[:0], self.wq[:0]
        lo, hi = groups[0][0], groups[-1][1]
        return self.seg[lo:hi], self.wq[lo:hi]

    def draw_structure(self, canvas: Any, s: int, disc: Any, line: Any) -> None:
        """Structure ``s``: its disc with paint ``disc``, then its branches with paint ``line``."""
        import skia

        d = self._discs[s]
        if d is not None:
            self.draw_disc(canvas, s, disc)
        path = skia.Path()
        round_caps = self.scene.round_caps
        for lo, hi, w in self._groups[s]:
            path.readFromMemory(_path_bytes(self.seg[lo:hi]))
            # matplotlib's 'projecting' (square) caps close the joints of thick lines; below 1 px the
            # cap is invisible and butt caps let skia take its much faster hairline path.
            if round_caps and w >= 1.0:
                line.setStrokeCap(skia.Paint.kRound_Cap)
            else:
                line.setStrokeCap(skia.Paint.kSquare_Cap if w >= 1.0 else skia.Paint.kButt_Cap)
            line.setStrokeWidth(w)
            canvas.drawPath(path, line)

    def groups(self, s: int) -> list[tuple[int, int, float]]:
        """Structure ``s``'s segment groups as (first, end, drawn width in px), indexing ``self.seg``."""
        return self._groups[s]

    def draw_disc(self, canvas: Any, s: int, paint: Any) -> None:
        """Structure ``s``'s disc (an ellipse when the scene gives aspects)."""
        x, y, r = self._discs[s]
        aspect = self.scene.circle_aspect
        if aspect is None or aspect[s] >= 1.0:
            canvas.drawCircle(x, y, r, paint)
            return
        canvas.save()
        canvas.translate(x, y)
        canvas.rotate(float(np.degrees(self.scene.circle_angle[s])))
        canvas.scale(1.0, float(aspect[s]))
        canvas.drawCircle(0.0, 0.0, r, paint)
        canvas.restore()


def render_matplotlib(scene: Scene, size: int) -> np.ndarray:
    """The reference rasteriser: the authors' matplotlib drawing calls on the same geometry."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    dpi = 100
    fig = Figure(figsize=(size / dpi, size / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    fig.patch.set_facecolor(tuple(scene.background))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    lw_pt = width_px(scene.seg_width, size) * 72.0 / dpi
    edge_pt = float(width_px(DISC_EDGE_PT, size)) * 72.0 / dpi
    order = np.argsort(scene.seg_struct, kind="stable")  # structure by structure, level order within
    owner = scene.seg_struct[order]
    bounds = np.searchsorted(owner, np.arange(len(scene.struct_kind) + 1))
    for s in range(len(scene.struct_kind)):
        colour = tuple(float(v) for v in scene.struct_rgb[s])
        if scene.circle_r[s] > 0:
            ax.add_patch(
                Circle(tuple(scene.circle_xy[s]), float(scene.circle_r[s]), color=colour, linewidth=edge_pt)
            )
        for i in order[bounds[s] : bounds[s + 1]]:
            x0, y0, x1, y1 = scene.seg_xy[i]
            ax.plot([x0, x1], [y0, y1], color=colour, alpha=scene.line_alpha, linewidth=lw_pt[i])
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[:, :, :3])


def render(scene: Scene, size: int, renderer: Renderer = "fast") -> np.ndarray:
    if renderer == "matplotlib":
        return render_matplotlib(scene, size)
    return render_skia(scene, size)


# One BGRA canvas per image size, reused by this process: a fresh 21 MB buffer per 2,310-px image
# costs ~10 ms of page faults before anything is drawn.
_CANVAS: dict[int, np.ndarray] = {}


def render_skia_png(scene: Scene, size: int, compress_level: int = 1) -> bytes:
    """Draw with skia and encode straight from the BGRA canvas (no RGB copy): the writer's fast path.

    Not thread-safe (one shared canvas per process); workers are processes."""
    from PIL import Image

    buf = _CANVAS.get(size)
    if buf is None:
        _CANVAS.clear()  # keep one size only
        buf = _CANVAS[size] = np.empty((size, size, 4), dtype=np.uint8)
    draw_skia(scene, size, buf)
    # Pillow reads the BGRA memory as raw mode BGRX, unpacking it to RGB in C.
    image = Image.frombuffer("RGB", (size, size), buf, "raw", "BGRX", 0, 1)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=compress_level)
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_photo_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of a photographic style's pixels: every row PNG's ``Up`` filter (its difference from
    the row above, one numpy pass) and zlib's Huffman-only coding. Pillow's encoder tries all five
    filters on every row to pick one, which cost more than the compression itself; a fixed filter at
    224 px encodes in under half the time for files ~5% larger (docs/dataset.md). Huffman-only: no
    LZ77 match search, which finds next to nothing in sensor noise. Lossless and
    deterministic: the bytes depend on the pixels and zlib only."""
    h, w = rgb.shape[:2]
    rows = np.ascontiguousarray(rgb, dtype=np.uint8).reshape(h, 3 * w)
    raw = np.empty((h, 3 * w + 1), dtype=np.uint8)
    raw[:, 0] = 2  # filter type Up
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])  # modulo 256, as PNG defines it
    z = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_HUFFMAN_ONLY)
    idat = z.compress(raw) + z.flush()
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", idat),
            _png_chunk(b"IEND", b""),
        )
    )


def encode_png(rgb: np.ndarray, compress_level: int = 1, photo: bool = False) -> bytes:
    """PNG bytes; level 1 is ~5x faster than Pillow's default and only ~15% larger for these images.
    ``photo``: the photographic styles' encoding (:func:`encode_photo_png`; ``compress_level`` unused)."""
    from PIL import Image

    if photo:
        return encode_photo_png(rgb)
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, format="PNG", compress_level=compress_level)
    return out.getvalue()
