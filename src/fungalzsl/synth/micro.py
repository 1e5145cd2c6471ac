"""The micrograph look of the three stages: what a microscope shows of spores, hyphae and mycelium.

Structures are sampled into an ordinary :class:`~fungalzsl.synth.geometry.Scene` (discs, now
ellipses, and round-capped branch segments), so the segmentation masks (``synth.masks``) come from the
very outlines drawn here; only the drawing differs from the paper's:

* **spore**: translucent round or ellipsoid cells with a refractive wall (a dark rim and a bright inner
  ring) and granular contents; from one cell filling the frame to fields of hundreds, spread or clumped,
  as packed masses of touching cells (a clump or the whole field, as a mount of a sporulating culture
  shows them) or as short chains of touching cells (conidia in chains, arthroconidia);
* **hyphae**: a few tubular filaments drawn with two walls (dark edges, lighter lumen), septa and
  lateral branches, some as germ tubes growing from a spore, now and then a free spore beside them;
  from thin filaments to thick septate tubes (a tenth of the field wide);
* **mycelium**: a dense interwoven network of thinner hyphae filling the field, sometimes with a
  thicker hypha across it.

Filaments are persistent random walks (the heading turns by N(0, κ) per step) that branch laterally,
grown level by level for all filaments at once, as ``geometry.grow_branches`` grows the paper's trees.
A share of the structures lies in another focal plane and is drawn blurred (``Optics.defocus_share``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from fungalzsl.synth.geometry import Scene
from fungalzsl.synth.optics import Optics, _colour
from fungalzsl.synth.render import _PT_PER_SIDE, PixelLayout, _path_bytes
from fungalzsl.synth.spores import SPORE_LAYOUTS, packed_spores, spore_chains, spread_spores

MAX_FILAMENT_SEGMENTS = 40_000


@dataclass
class Decor:
    """What the micrograph draws beyond the scene's outlines (none of it changes a mask)."""

    blurred: np.ndarray  # (S,) bool: structure in the out-of-focus plane
    septa: np.ndarray  # (K, 4) cross walls inside tubes, unit square, y up
    septum_struct: np.ndarray  # (K,) their structure
    granules: np.ndarray  # (G, 3) x, y, r of granules inside cells, unit square, y up
    granule_struct: np.ndarray  # (G,)


def grow_filaments(
    rng: np.random.Generator,
    start: np.ndarray,
    heading: np.ndarray,
    width: np.ndarray,
    steps: np.ndarray,
    owner: np.ndarray,
    step_len: float,
    curvature: float,
    branch_p: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Grow one filament per row of ``start`` (n, 2) for ``steps`` steps each; returns segments
    (M, 4) float32, widths (unit-square fraction), owners and branch levels.

    Per step a filament turns by a triangular variate of σ ≈ ``curvature`` (radians), advances
    ``step_len`` and, with probability ``branch_p``, sends a lateral branch 30–75° to either side
    (width ×U(0.6, 0.9), a share of the steps it has left)."""
    f32 = np.float32
    tips = (start.astype(f32), heading.astype(f32), width.astype(f32), steps.astype(np.int64), owner, 0)
    out: list[tuple[np.ndarray, ...]] = []
    total = 0
    # Level by level: each filament's whole walk is a cumulative sum over its steps (one (n, m) array
    # per level), then its lateral branches start the next level.
    while tips[0].shape[0] and total < MAX_FILAMENT_SEGMENTS:
        xy, a0, w, k, own, lev = tips
        n, m = xy.shape[0], int(k.max())
        u = rng.random((5, n, m), dtype=f32)
        ang = a0[:, None] + np.cumsum(f32(curvature * 2.45) * (u[0] + u[1] - f32(1.0)), axis=1)
        end_x = xy[:, :1] + np.cumsum(f32(step_len) * np.cos(ang), axis=1)
        end_y = xy[:, 1:] + np.cumsum(f32(step_len) * np.sin(ang), axis=1)
        beg_x = np.concatenate((xy[:, :1], end_x[:, :-1]), axis=1)
        beg_y = np.concatenate((xy[:, 1:], end_y[:, :-1]), axis=1)
        step = np.arange(m)[None, :]
        valid = step < k[:, None]
        seg = np.stack((beg_x[valid], beg_y[valid], end_x[valid], end_y[valid]), axis=1)
        rows = np.broadcast_to(np.arange(n)[:, None], (n, m))[valid]
        out.append((seg, w[rows], own[rows], np.full(rows.size, lev, np.int16)))
        total += rows.size
        left = k[:, None] - step - 1
        fork = valid & (u[2] < f32(branch_p)) & (left > 2)
        i, j = np.nonzero(fork)
        side = np.where(u[3][i, j] < 0.5, f32(-1), f32(1))
        tips = (
            np.stack((end_x[i, j], end_y[i, j]), axis=1),
            ang[i, j] + side * (f32(0.5) + f32(0.8) * u[4][i, j]),  # 30-75 degrees to either side
            w[i] * (f32(0.6) + f32(0.3) * u[4][i, j]),
            np.floor(left[i, j] * (0.3 + 0.6 * u[3][i, j])).astype(np.int64),
            own[i],
            lev + 1,
        )
        keep = tips[3] > 0
        tips = tuple(t[keep] if isinstance(t, np.ndarray) else t for t in tips)
    if not out:
        return np.zeros((0, 4), f32), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int16)
    seg, wid, owners, levels = (np.concatenate(parts) for parts in zip(*out))
    return np.ascontiguousarray(seg, dtype=f32), wid.astype(np.float64), owners.astype(np.int64), levels


class _Builder:
    """Accumulates structures (a disc and/or filaments each) into one Scene."""

    def __init__(self) -> None:
        self.kind: list[str] = []
        self.host: list[bool] = []
        self.xy: list[np.ndarray] = []  # per add_many call: (n, 2) centres, (n,) radii, aspects, angles
        self.r: list[np.ndarray] = []
        self.aspect: list[np.ndarray] = []
        self.angle: list[np.ndarray] = []
        self.segs: list[tuple[np.ndarray, ...]] = []

    def add_many(
        self, kind: str, host: bool, xy: np.ndarray, r: np.ndarray, aspect: np.ndarray | None = None,
        angle: np.ndarray | None = None,
    ) -> list[int]:  # fmt: skip
        """``len(r)`` structures of one kind; returns their indices."""
        n, first = len(r), len(self.kind)
        self.kind += [kind] * n
        self.host += [host] * n
        self.xy.append(np.asarray(xy, np.float64).reshape(n, 2))
        self.r.append(np.asarray(r, np.float64).reshape(n))
        self.aspect.append(np.ones(n) if aspect is None else np.asarray(aspect, np.float64).reshape(n))
        self.angle.append(np.zeros(n) if angle is None else np.asarray(angle, np.float64).reshape(n))
        return list(range(first, first + n))

    def add(
        self, kind: str, host: bool, xy: np.ndarray, r: float, aspect: float = 1.0, angle: float = 0.0
    ) -> int:
        return self.add_many(
            kind, host, np.reshape(xy, (1, 2)), np.array([r]), np.array([aspect]), np.array([angle])
        )[0]

    def scene(self, background: np.ndarray, round_caps: bool = True) -> Scene:
        seg = [s for s in self.segs if s[0].shape[0]]
        cat = np.concatenate
        return Scene(
            background=background,
            struct_kind=self.kind,
            struct_host=np.array(self.host, dtype=bool),
            circle_xy=np.concatenate(self.xy) if self.xy else np.zeros((0, 2)),
            circle_r=np.concatenate(self.r) if self.r else np.zeros(0),
            struct_rgb=np.zeros((len(self.kind), 3)),
            seg_xy=cat([s[0] for s in seg]) if seg else np.zeros((0, 4), np.float32),
            seg_width=cat([s[1] for s in seg]) * _PT_PER_SIDE if seg else np.zeros(0),
            seg_struct=cat([s[2] for s in seg]) if seg else np.zeros(0, np.int64),
            seg_level=cat([s[3] for s in seg]) if seg else np.zeros(0, np.int16),
            line_alpha=1.0,
            circle_aspect=np.concatenate(self.aspect) if self.aspect else np.zeros(0),
            circle_angle=np.concatenate(self.angle) if self.angle else np.zeros(0),
            round_caps=round_caps,
        )


def _add_spores(b: _Builder, rng: np.random.Generator, kind: str, host: bool, n: int, r: float) -> None:
    xy, radius, aspect, angle = spread_spores(rng, n, r, spread=max(3 * r, 0.04))
    b.add_many(kind, host, xy, radius, aspect, angle)


def _add_filaments(
    b: _Builder, rng: np.random.Generator, structs: list[int], start: np.ndarray, width: np.ndarray,
    steps: np.ndarray, step_len: float, curvature: float | None = None, heading: np.ndarray | None = None,
) -> None:  # fmt: skip
    heading = rng.uniform(0, 2 * np.pi, size=len(structs)) if heading is None else heading
    curvature = float(rng.uniform(0.02, 0.15)) if curvature is None else curvature
    b.segs.append(
        grow_filaments(rng, start, heading, width, steps, np.array(structs), step_len,
                       curvature=curvature, branch_p=rng.uniform(0.0, 0.07))
    )  # fmt: skip


def micro_scene(label: str, rng: np.random.Generator, background: np.ndarray) -> Scene:
    """The structures of one micrograph of class ``label`` (spore, hyphae or mycelium)."""
    b = _Builder()
    if label == "spore":
        layout = rng.uniform()
        if layout < SPORE_LAYOUTS["packed"]:
            b.add_many("spore", True, *packed_spores(rng))
        elif layout < SPORE_LAYOUTS["packed"] + SPORE_LAYOUTS["chains"]:
            b.add_many("spore", True, *spore_chains(rng))
        else:
            n = int(np.rint(np.exp(rng.uniform(0.0, np.log(300.0)))))
            r = float(np.clip(0.42 / np.sqrt(n) * rng.uniform(0.35, 1.0), 0.008, 0.45))
            _add_spores(b, rng, "spore", True, n, r)
        return b.scene(background)
    if label == "hyphae":
        # thin filaments to thick septate tubes (log-uniform width, up to a tenth of the field)
        n, w0 = int(rng.integers(1, 7)), float(np.exp(rng.uniform(np.log(0.01), np.log(0.09))))
        structs, starts, widths, steps, headings = [], [], [], [], []
        for _ in range(n):
            w = w0 * rng.uniform(0.8, 1.2)
            germ = rng.uniform() < 0.45  # a germ tube growing from its spore
            p = rng.uniform(0.1, 0.9, size=2) if germ else rng.uniform(0.25, 0.75, size=2)
            s = b.add(
                "hyphae",
                True,
                p,
                w * rng.uniform(1.1, 2.2) if germ else 0.0,
                rng.uniform(0.6, 1.0),
                rng.uniform(0, np.pi),
            )
            a = rng.uniform(0, 2 * np.pi)
            # Germ tubes leave their spore in any direction; any other hypha passes through the field
            # (two walks from one point in opposite directions), so it never leaves only a stub at an edge.
            tubes = (
                [a + k * 2 * np.pi / 3 + rng.uniform(-0.5, 0.5) for k in range(int(rng.integers(1, 4)))]
                if germ
                else [a, a + np.pi]
            )
            for h in tubes:
                structs.append(s)
                starts.append(p)
                widths.append(w)
                headings.append(h)
                steps.append(int(rng.integers(8, 40)) if germ else int(rng.integers(12, 35)))
        _add_filaments(
            b, rng, structs, np.array(starts), np.array(widths), np.array(steps), rng.uniform(0.015, 0.03),
            heading=np.array(headings),
        )  # fmt: skip
        if rng.uniform() < 0.4:
            _add_spores(b, rng, "spore", False, int(rng.integers(1, 4)), w0 * rng.uniform(1.2, 2.5))
        return b.scene(background)
    if label != "mycelium":
        raise ValueError(f"the micrograph style draws spore, hyphae and mycelium, not {label!r}")
    n = int(rng.integers(25, 140))
    w0 = rng.uniform(0.003, 0.014) if n > 60 else rng.uniform(0.004, 0.02)
    structs = b.add_many("mycelium", True, np.full((n, 2), 0.5), np.zeros(n))
    _add_filaments(
        b, rng, structs, rng.uniform(-0.1, 1.1, size=(n, 2)), w0 * rng.uniform(0.7, 1.3, size=n),
        rng.integers(8, 30, size=n), rng.uniform(0.03, 0.05), rng.uniform(0.05, 0.3),
    )  # fmt: skip
    if rng.uniform() < 0.5:
        k = int(rng.integers(1, 3))
        thick = b.add_many("hyphae", False, np.full((k, 2), 0.5), np.zeros(k))
        _add_filaments(b, rng, thick, rng.uniform(0.0, 1.0, size=(k, 2)), np.full(k, w0 * rng.uniform(2, 3)),
                       rng.integers(15, 30, size=k), 0.04)  # fmt: skip
    # A dense network of thin tubes: square caps as the paper draws them (the masks follow the
    # scene), which skia strokes several times faster than round ones.
    return b.scene(background, round_caps=False)


def micro_decor(scene: Scene, rng: np.random.Generator, defocus_share: float) -> Decor:
    """Focal plane per structure, septa in the tubes and granules in the cells."""
    n = len(scene.struct_kind)
    blurred = rng.uniform(size=n) < defocus_share
    seg, w = scene.seg_xy, scene.seg_width / _PT_PER_SIDE
    pick = np.flatnonzero(rng.uniform(size=seg.shape[0]) < rng.uniform(0.0, 0.4))
    mid = 0.5 * (seg[pick, :2] + seg[pick, 2:])
    d = seg[pick, 2:] - seg[pick, :2]
    perp = np.stack((-d[:, 1], d[:, 0]), axis=1) / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
    half = (0.45 * w[pick])[:, None] * perp
    septa = np.concatenate((mid - half, mid + half), axis=1)
    has = np.flatnonzero(scene.circle_r > 0)
    k = rng.integers(0, 5, size=has.size)
    owner = np.repeat(has, k)
    r = scene.circle_r[owner] * np.asarray(scene.circle_aspect)[owner]
    off = rng.uniform(-0.55, 0.55, size=(owner.size, 2)) * r[:, None]
    granules = np.column_stack((scene.circle_xy[owner] + off, r * rng.uniform(0.08, 0.22, size=owner.size)))
    return Decor(blurred, septa, np.asarray(scene.seg_struct)[pick], granules, owner)


def draw_micro(canvas: Any, scene: Scene, decor: Decor, optics: Optics, size: int) -> None:
    """Draw the structures onto ``canvas`` (the field and artefacts are drawn by ``optics``): the
    blurred focal plane first, inside a blurred layer, then the sharp one."""

    layout = PixelLayout(scene, size)
    sharp = np.flatnonzero(~decor.blurred)
    soft = np.flatnonzero(decor.blurred)
    if soft.size:
        _draw_defocused(canvas, layout, soft, decor, optics, size)
    if sharp.size:
        _draw_tubes(canvas, layout, sharp, decor, optics, size)
        _draw_cells(canvas, layout, sharp, decor, optics, size)


def _draw_defocused(
    canvas: Any, layout: PixelLayout, structs: np.ndarray, decor: Decor, optics: Optics, size: int
) -> None:
    """The out-of-focus plane: drawn at 1/f of the size, blurred there, scaled up with bilinear
    sampling (a blur of σ px costs what one of σ/f px does)."""
    import skia

    sigma = optics.defocus_sigma * size
    f = int(np.clip(sigma / 0.8, 2, 8))
    small = skia.Surface(int(np.ceil(size / f)), int(np.ceil(size / f)))
    sc = small.getCanvas()
    sc.clear(skia.Color4f(0, 0, 0, 0))
    sc.saveLayer(None, skia.Paint(ImageFilter=skia.ImageFilters.Blur(sigma / f, sigma / f)))
    sc.scale(1.0 / f, 1.0 / f)
    _draw_tubes(sc, layout, structs, decor, optics, size)
    _draw_cells(sc, layout, structs, decor, optics, size)
    sc.restore()
    image = small.makeImageSnapshot()
    side = image.width() * f
    canvas.drawImageRect(image, skia.Rect.MakeWH(side, side), skia.SamplingOptions(skia.FilterMode.kLinear))


def _draw_tubes(
    canvas: Any, layout: PixelLayout, structs: np.ndarray, decor: Decor, optics: Optics, size: int
) -> None:
    import skia

    by_width: dict[float, list[np.ndarray]] = {}
    for s in structs.tolist():
        for lo, hi, w in layout.groups(s):
            by_width.setdefault(w, []).append(layout.seg[lo:hi])
    if not by_width:
        return
    paint = skia.Paint(AntiAlias=True, Style=skia.Paint.kStroke_Style)
    paths = {}  # one path per width, built once for all passes
    for w, parts in by_width.items():
        paths[w] = skia.Path()
        paths[w].readFromMemory(_path_bytes(np.ascontiguousarray(np.concatenate(parts))))
    path = skia.Path()
    round_caps = layout.scene.round_caps
    passes = (
        (optics.halo, optics.halo_alpha, lambda w: w * 1.7 + 1.0),
        (optics.wall, 1.0, lambda w: w),
        (optics.lumen, optics.lumen_alpha, lambda w: w * (1 - 2 * optics.wall_frac)),
    )
    for rgb, alpha, stroke in passes:
        if alpha <= 0.1:
            continue
        paint.setColor4f(_colour(skia, rgb, alpha))
        # A halo outside phase contrast is a faint band (alpha ≤ 0.35) whose edges the camera's noise
        # and JPEG hide: drawn aliased, it costs a third of an anti-aliased one (~2 ms a mycelium).
        paint.setAntiAlias(rgb is not optics.halo or optics.imaging == "phase")
        for w, tube in paths.items():
            sw = stroke(w)
            if rgb is not optics.wall and (sw < 1.2 or (w < 1.0 and optics.imaging != "phase")):
                continue  # a hairline has no visible lumen, and a halo only in phase contrast
            # Round caps as the masks draw them (PixelLayout); hairlines take skia's fast butt-cap path.
            if sw < 1.0:
                paint.setStrokeCap(skia.Paint.kButt_Cap)
            else:
                paint.setStrokeCap(skia.Paint.kRound_Cap if round_caps else skia.Paint.kSquare_Cap)
            paint.setStrokeWidth(sw)
            canvas.drawPath(tube, paint)
    mine = np.isin(decor.septum_struct, structs)
    if mine.any():
        sep = decor.septa[mine].astype(np.float32) * np.float32(size)
        sep[:, 1] = size - sep[:, 1]
        sep[:, 3] = size - sep[:, 3]
        path.readFromMemory(_path_bytes(np.ascontiguousarray(sep)))
        paint.setColor4f(_colour(skia, optics.wall, 0.8))
        paint.setStrokeWidth(
            max(float(np.median(layout.wq)) * optics.wall_frac, 0.5) if layout.wq.size else 0.5
        )
        canvas.drawPath(path, paint)


def _draw_cells(
    canvas: Any, layout: PixelLayout, structs: np.ndarray, decor: Decor, optics: Optics, size: int
) -> None:
    """Cells as one path of ellipses: a translucent fill, the dark rim, a bright inner ring, granules."""
    import skia

    scene = layout.scene
    cells = [s for s in structs.tolist() if layout.disc(s) is not None]
    if not cells:
        return
    x, y, r = np.array([layout.disc(s) for s in cells], dtype=np.float64).T
    rim = max(float(np.median(r)) * optics.wall_frac * 0.6, 0.7)
    c, si = np.cos(scene.circle_angle[cells]), np.sin(scene.circle_angle[cells])
    asp = np.asarray(scene.circle_aspect, dtype=np.float64)[cells]
    # The rim is stroked inset by half its width, so the cell's outline stays the mask's outline.
    outer, edge_path, inner = (
        _ellipses(rk * c, -rk * asp * si, x, rk * si, rk * asp * c, y)
        for rk in (r, np.maximum(r - 0.5 * rim, 0.1), 0.8 * r)
    )
    fill = skia.Paint(AntiAlias=True, Style=skia.Paint.kFill_Style, Color4f=_colour(skia, optics.cell, 0.9))
    canvas.drawPath(outer, fill)
    ring = skia.Paint(
        AntiAlias=True,
        Style=skia.Paint.kStroke_Style,
        Color4f=_colour(skia, optics.halo, max(optics.halo_alpha, 0.35)),
    )
    ring.setStrokeWidth(rim * 0.8)
    canvas.drawPath(inner, ring)
    mine = np.isin(decor.granule_struct, cells)
    if mine.any():
        g = decor.granules[mine] * size
        gr, zero = np.maximum(g[:, 2], 0.4), np.zeros(g.shape[0])
        dots = _ellipses(gr, zero, g[:, 0], zero, gr, size - g[:, 1])
        canvas.drawPath(dots, skia.Paint(AntiAlias=True, Color4f=_colour(skia, optics.wall, 0.35)))
    edge = skia.Paint(
        AntiAlias=True, Style=skia.Paint.kStroke_Style, Color4f=_colour(skia, optics.wall, 0.95)
    )
    edge.setStrokeWidth(rim)
    canvas.drawPath(edge_path, edge)


# skia's unit circle (Path.addCircle(0, 0, 1)): a move and four quarter conics of weight √½, closed.
_UNIT_CIRCLE = np.array(
    [[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1], [1, 0]], np.float64
)
_CIRCLE_VERBS = bytes([0, 3, 3, 3, 3, 5])  # move, 4 conics, close


def _ellipses(
    a: np.ndarray, b: np.ndarray, tx: np.ndarray, c: np.ndarray, d: np.ndarray, ty: np.ndarray
) -> Any:
    """One skia path of ``n`` ellipses: the unit circle under each affine map (x, y) → (a·x + b·y + tx,
    c·x + d·y + ty), as ``Path.addPath(unit, Matrix)`` per cell would build it (conic weights do not
    change under an affine map), but built from numpy bytes: one call instead of ``n``."""
    import skia

    n = len(a)
    ux, uy = _UNIT_CIRCLE[:, 0], _UNIT_CIRCLE[:, 1]
    pts = np.empty((n, 9, 2), dtype=np.float32)
    pts[:, :, 0] = a[:, None] * ux + b[:, None] * uy + tx[:, None]
    pts[:, :, 1] = c[:, None] * ux + d[:, None] * uy + ty[:, None]
    weights = np.full(4 * n, np.sqrt(0.5), dtype=np.float32)
    header = struct.pack("<4i", 5, 9 * n, 4 * n, 6 * n)  # version 5, winding fill; counts
    path = skia.Path()
    path.readFromMemory(
        b"".join((header, pts.tobytes(), weights.tobytes(), _CIRCLE_VERBS * n, b"\0" * (-6 * n % 4)))
    )
    return path
