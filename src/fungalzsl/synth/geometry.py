"""Geometry of one synthetic image: spores F((x, y), r) and recursive branches B(L·α^d, W·β^d).

Geometry is sampled once, as plain numpy arrays, and handed to a renderer; the fast (skia) and the
reference (matplotlib) renderers therefore draw exactly the same picture.

The branch recursion is the authors' ``generate_randomized_branch`` (Generator.py), computed level by
level over all open branches at once instead of one Python call per segment: a mycelium image has
~9,000 segments, and the vectorised form samples them in about a millisecond. For a branch of length L,
width W and remaining depth d at (x, y):

* stop if d == 0 or L < min_length;
* the drawn length is L·α·N(1, σ_L) (α = 0.7); draw the segment at a uniform random angle;
* from its end grow k sub-branches (k ~ U{3..5} or Poisson(λ)), each of length
  L_drawn·U(0.4, 0.6)·N(1, σ_T) (σ_T: the temperature factor) and width W·U(0.6, 1.0), depth d-1;
* a structure's first branch also sends ``root_branches`` extra branches from the centre, with the
  drawn length and width, depth d-1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fungalzsl.errors import fail
from fungalzsl.synth.colour import hex_to_rgb, ramp_colours
from fungalzsl.synth.preset import Branching, ClassSpec, GeneratorPreset


@dataclass
class Scene:
    """Everything a renderer needs, in unit-square coordinates (y up), plus what metadata records.

    Draw order is structure by structure: its disc, then its branches, as the authors' code does."""

    background: np.ndarray  # (3,) RGB in [0, 1]
    struct_kind: list[str]  # class name of each structure
    struct_host: np.ndarray  # (S,) bool: a structure of the image's own class (not an overlap)
    circle_xy: np.ndarray  # (S, 2) centre of each structure's disc
    circle_r: np.ndarray  # (S,) disc radius (0: no disc)
    struct_rgb: np.ndarray  # (S, 3) colour of each structure
    seg_xy: np.ndarray  # (M, 4) x0, y0, x1, y1
    seg_width: np.ndarray  # (M,) points on the reference canvas
    seg_struct: np.ndarray  # (M,) index of the structure each segment belongs to
    seg_level: np.ndarray  # (M,) recursion level (0 = first branch)
    line_alpha: float = 0.8

    @property
    def n_segments(self) -> int:
        return int(self.seg_xy.shape[0])

    def counts(self) -> dict[str, int]:
        """Number of structures of each class in the image."""
        out: dict[str, int] = {}
        for k in self.struct_kind:
            out[k] = out.get(k, 0) + 1
        return out


def _n_children(rng: np.random.Generator, b: Branching, n: int) -> np.ndarray:
    if b.sub_branches == "poisson":
        return rng.poisson(b.sub_branches_lambda, size=n)
    lo, hi = b.sub_branches_range
    return rng.integers(lo, hi + 1, size=n)


def grow_branches(
    rng: np.random.Generator,
    b: Branching,
    origin: np.ndarray,
    length: np.ndarray,
    width: np.ndarray,
    depth: np.ndarray,
    root_branches: np.ndarray,
    owner: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Grow one branch tree per row of ``origin`` (n, 2); returns segments (M, 4), widths, owners, levels.

    ``owner`` tags each tree's segments (the structure index). Each level is a handful of numpy
    calls over every open branch of every tree: children are gathered from their parents by index."""
    x, y = origin[:, 0].astype(np.float64), origin[:, 1].astype(np.float64)
    L, W = length.astype(np.float64), width.astype(np.float64)
    d, own = depth.astype(np.int64), owner.astype(np.int64)
    k0 = root_branches.astype(np.int64)
    ang = rng.random(x.shape[0]) * (2 * np.pi)
    segs, widths, owners, levels = [], [], [], []
    total, level = 0, 0
    while x.size:
        alive = (d > 0) & (b.min_length <= L)
        if not alive.all():
            keep = np.flatnonzero(alive)
            x, y, L, W, d, own, ang, k0 = (a[keep] for a in (x, y, L, W, d, own, ang, k0))
        n = x.size
        if n == 0:
            break
        z = rng.standard_normal((2, n))  # length jitter, temperature factor
        u = rng.random((2, n))  # sub-branch length factor, width factor β
        k = _n_children(rng, b, n)
        L = L * b.length_decay * np.maximum(1.0 + b.length_jitter * z[0], 0.0)
        ex, ey = x + L * np.cos(ang), y + L * np.sin(ang)
        segs.append(np.column_stack((x, y, ex, ey)))
        widths.append(W)
        owners.append(own)
        levels.append(np.full(n, level, dtype=np.int16))
        total += n
        if total > b.max_segments:
            raise fail(
                f"the preset makes more than {b.max_segments} branch segments in one image",
                "lower depth, root_branches or sub_branches, or raise branching.max_segments",
            )
        # Sub-branches from each end share one length and one width per parent, as in the original.
        temp = np.maximum(1.0 + b.temperature_factor_sd * z[1], 0.0)
        lo, hi = b.sub_length
        sub_len = L * (lo + (hi - lo) * u[0]) * temp
        wlo, whi = b.width_factor
        sub_w = W * (wlo + (whi - wlo) * u[1])
        # Children that would stop at once (no depth left, or too short) are never created: same
        # picture, fewer arrays and random numbers.
        k = np.where((d > 1) & (b.min_length <= sub_len), k, 0)
        parent = np.repeat(np.arange(n), k)
        nx, ny, nL, nW, nd, no = (
            ex[parent],
            ey[parent],
            sub_len[parent],
            sub_w[parent],
            d[parent] - 1,
            own[parent],
        )
        k0 = np.where((d > 1) & (b.min_length <= L), k0, 0)
        if k0.any():
            # A structure's first branch also sends root branches from the centre (drawn length/width).
            root = np.repeat(np.arange(n), k0)
            nx, ny = np.concatenate((nx, x[root])), np.concatenate((ny, y[root]))
            nL, nW = np.concatenate((nL, L[root])), np.concatenate((nW, W[root]))
            nd, no = np.concatenate((nd, d[root] - 1)), np.concatenate((no, own[root]))
        x, y, L, W, d, own = nx, ny, nL, nW, nd, no
        k0 = np.zeros(x.size, dtype=np.int64)
        ang = rng.random(x.size) * (2 * np.pi)
        level += 1
    if not segs:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int16)
    return np.concatenate(segs), np.concatenate(widths), np.concatenate(owners), np.concatenate(levels)


@dataclass
class _Batch:
    """Structures to place: their class spec, colour ramp and whether they belong to the host class."""

    spec: ClassSpec
    count: int
    ramp: tuple[np.ndarray, np.ndarray]
    host: bool


def build_scene(
    preset: GeneratorPreset,
    batches: list[_Batch],
    rng: np.random.Generator,
    background: np.ndarray,
    centres: list[np.ndarray] | None = None,
) -> Scene:
    """Place the structures of each batch (random centres unless given) and grow their branches."""
    lo, hi = preset.placement
    kinds: list[str] = []
    host, xy, r, rgb, L, W, D, K = [], [], [], [], [], [], [], []
    for i, bt in enumerate(batches):
        c = centres[i] if centres is not None else rng.uniform(lo, hi, size=(bt.count, 2))
        kinds += [bt.spec.name] * bt.count
        host.append(np.full(bt.count, bt.host))
        xy.append(c)
        r.append(np.full(bt.count, bt.spec.spore_radius))
        rgb.append(ramp_colours(bt.ramp[0], bt.ramp[1], c[:, 1]))
        L.append(np.full(bt.count, bt.spec.branch_length))
        W.append(np.full(bt.count, bt.spec.branch_width))
        D.append(np.full(bt.count, bt.spec.depth))
        K.append(np.full(bt.count, bt.spec.root_branches))
    cat = np.concatenate
    circle_xy = cat(xy) if xy else np.zeros((0, 2))
    seg, width, owner, level = grow_branches(
        rng, preset.branching, circle_xy, cat(L), cat(W), cat(D), cat(K), np.arange(len(kinds))
    )
    # Draw order: structure by structure (stable sort keeps each tree's level order).
    order = np.argsort(owner, kind="stable")
    return Scene(
        background=background,
        struct_kind=kinds,
        struct_host=cat(host).astype(bool),
        circle_xy=circle_xy,
        circle_r=cat(r),
        struct_rgb=cat(rgb) if rgb else np.zeros((0, 3)),
        seg_xy=seg[order],
        seg_width=width[order],
        seg_struct=owner[order],
        seg_level=level[order],
        line_alpha=preset.line_alpha,
    )


def class_batches(
    preset: GeneratorPreset,
    class_name: str,
    rng: np.random.Generator,
    palette_ramp: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[_Batch]:
    """The host structures of ``class_name`` and, by chance, the overlap structures of other stages.

    ``palette_ramp`` (a callable returning a random ramp) replaces every class's colours."""
    spec = preset.spec(class_name)

    def ramp(s: ClassSpec) -> tuple[np.ndarray, np.ndarray]:
        return (hex_to_rgb(s.colours[0]), hex_to_rgb(s.colours[1]))

    host_ramp = palette_ramp() if palette_ramp else ramp(spec)
    batches = [_Batch(spec, spec.n_structures, host_ramp, True)]
    for o in spec.overlap:
        if rng.uniform() < o.probability:
            n = int(rng.integers(o.count[0], o.count[1] + 1))
            other = preset.spec(o.class_)
            if o.colours == "host":
                r = host_ramp
            else:
                r = palette_ramp() if palette_ramp else ramp(other)
            batches.append(_Batch(other, n, r, False))
    return batches
