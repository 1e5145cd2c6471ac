"""Geometry of one synthetic image: spores F((x, y), r) and recursive branches B(L·α^d, W·β^d).

Geometry is sampled once, as plain numpy arrays, and handed to a renderer; the fast (skia) and the
reference (matplotlib) renderers therefore draw exactly the same picture.

The branch recursion is the authors' ``generate_randomized_branch`` (Generator.py), computed level by
level over all open branches at once instead of one Python call per segment: a mycelium image has
~10,000 segments, and the vectorised form samples them in ~0.4 ms (float32; normals by Box–Muller).
The test suite checks it against a plain recursive sampler, level by level. For a branch of length L,
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
from dataclasses import dataclass, field

import numpy as np

from fungalzsl.errors import fail
from fungalzsl.synth.colour import hex_to_rgb, ramp_colours
from fungalzsl.synth.preset import Branching, ClassSpec, GeneratorPreset


@dataclass
class Scene:
    """Everything a renderer needs, in unit-square coordinates (y up), plus what metadata records.

    Draw order is structure by structure: its disc, then its branches, as the authors' code does.
    The segment arrays need not be grouped by structure (``seg_struct`` says whose each one is);
    renderers draw a structure's segments in their order here."""

    background: np.ndarray  # (3,) RGB in [0, 1]
    struct_kind: list[str]  # class name of each structure
    struct_host: np.ndarray  # (S,) bool: a structure of the image's own class (not an overlap)
    circle_xy: np.ndarray  # (S, 2) centre of each structure's disc
    circle_r: np.ndarray  # (S,) disc radius (0: no disc)
    struct_rgb: np.ndarray  # (S, 3) colour of each structure
    seg_xy: np.ndarray  # (M, 4) x0, y0, x1, y1 (float32)
    seg_width: np.ndarray  # (M,) points on the reference canvas
    seg_struct: np.ndarray  # (M,) index of the structure each segment belongs to
    seg_level: np.ndarray  # (M,) recursion level (0 = first branch)
    line_alpha: float = 0.8
    # The photographic styles (synth.micro, synth.colony) draw ellipsoid cells and round-capped tubes;
    # the paper's discs are circles and its strokes square-capped (None / False: today's drawing).
    circle_aspect: np.ndarray | None = None  # (S,) minor/major axis ratio of each disc, ≤ 1
    circle_angle: np.ndarray | None = None  # (S,) orientation of the major axis, radians
    round_caps: bool = False
    # What a builder of synth.stages drew beyond discs and strokes (germ tubes, buds, spore heads),
    # for the grounded captions (synth.captions); empty for the paper's classes.
    notes: dict = field(default_factory=dict)

    @property
    def n_segments(self) -> int:
        return int(self.seg_xy.shape[0])

    def counts(self) -> dict[str, int]:
        """Number of structures of each class in the image."""
        out: dict[str, int] = {}
        for k in self.struct_kind:
            out[k] = out.get(k, 0) + 1
        return out


_TWO_PI = np.float32(2 * np.pi)


def normal_pair(u1: np.ndarray, u2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent N(0, 1) arrays from two independent U[0, 1) arrays (Box–Muller).

    In float32 this is ~3x cheaper than ``Generator.standard_normal``; its tails reach 5.8 σ
    (u1 ≥ 2⁻²⁴), far beyond where the N(1, σ ≤ 1) growth factors are clipped at 0."""
    r = np.sqrt(np.float32(-2.0) * np.log1p(-u1))
    t = _TWO_PI * u2
    return r * np.cos(t), r * np.sin(t)


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
    """Grow one branch tree per row of ``origin`` (n, 2); returns segments (M, 4) float32, widths,
    owners and levels, in level order (level 0 of every tree, then level 1, …).

    ``owner`` tags each tree's segments (the structure index). Each level is a few numpy calls over
    every open branch of every tree, in float32 (sub-micro-pixel error even at 2,310 px): the open
    branches are the columns of one (6, n) state array — x, y, undrawn length, width, remaining
    depth, tree — and a parent's children are its column repeated k times."""
    depth = np.asarray(depth, dtype=np.int64)
    length = np.asarray(length, dtype=np.float64)
    owner = np.asarray(owner, dtype=np.int64)
    start = np.flatnonzero((depth > 0) & (length >= b.min_length))
    if not start.size:  # spores: nothing grows
        return np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int16)
    state = np.stack(
        (origin[start, 0], origin[start, 1], length[start], np.asarray(width, np.float64)[start],
         depth[start], start)
    ).astype(np.float32)  # fmt: skip
    roots = np.asarray(root_branches, dtype=np.int64)[start]
    f32 = np.float32
    # Constants of the per-branch draws, folded so that each is one or two array operations.
    decay, decay_sd = f32(b.length_decay), f32(b.length_decay * b.length_jitter)
    sub_lo, sub_span = f32(b.sub_length[0]), f32(b.sub_length[1] - b.sub_length[0])
    temp_sd = f32(b.temperature_factor_sd)
    w_lo, w_span = f32(b.width_factor[0]), f32(b.width_factor[1] - b.width_factor[0])
    klo, kcount = b.sub_branches_range[0], f32(b.sub_branches_range[1] - b.sub_branches_range[0] + 1)
    min_length, one = f32(b.min_length), f32(1.0)
    drawn: list[np.ndarray] = []  # per level: the state (6, n), then the segment ends (2, n)
    total = 0
    while state.shape[1]:
        n = state.shape[1]
        total += n
        if total > b.max_segments:
            raise fail(
                f"the preset makes more than {b.max_segments} branch segments in one image",
                "lower depth, root_branches or sub_branches, or raise branching.max_segments",
            )
        x, y, L, W, d, tree = state
        # Per branch: length jitter and temperature factor (normals), angle, sub-branch length
        # factor, width factor β, and the number of sub-branches.
        u = rng.random((6, n), dtype=f32)
        z_len, z_temp = normal_pair(u[0], u[1])
        L *= np.maximum(decay + decay_sd * z_len, 0)  # L·α·N(1, σ_L), clipped at 0
        ang = _TWO_PI * u[2]
        child = np.empty((6, n), dtype=f32)  # the sub-branches' state
        np.multiply(L, np.cos(ang), out=child[0])
        child[0] += x
        np.multiply(L, np.sin(ang), out=child[1])
        child[1] += y
        drawn.append(state)
        drawn.append(child[:2])
        # Sub-branches from each end share one length and one width per parent, as in the original.
        np.multiply(L * (sub_lo + sub_span * u[3]), np.maximum(one + temp_sd * z_temp, 0), out=child[2])
        np.multiply(W, w_lo + w_span * u[4], out=child[3])
        np.subtract(d, one, out=child[4])
        child[5] = tree
        if b.sub_branches == "poisson":
            k = rng.poisson(b.sub_branches_lambda, size=n)
        else:
            # floor(m·u) < m for u < 1 in float32 for every m ≤ 13 (tested), so k ≤ high.
            k = (kcount * u[5]).astype(np.intp)
            k += klo
        # Children that would stop at once (no depth left, or too short) are never created: same
        # picture, fewer arrays and random numbers.
        k[(d <= one) | (child[2] < min_length)] = 0
        nxt = np.repeat(child, k, axis=1)
        if len(drawn) == 2 and roots.any():
            # A structure's first branch also sends root branches from the centre, with the drawn
            # length and width, depth d - 1 (so they grow in step with level 1).
            r = np.where((d > one) & (min_length <= L), roots, 0)
            extra = state.copy()
            extra[4] = child[4]
            nxt = np.concatenate((nxt, np.repeat(extra, r, axis=1)), axis=1)
        state = nxt
    starts, ends = np.concatenate(drawn[0::2], axis=1), np.concatenate(drawn[1::2], axis=1)
    seg = np.empty((total, 4), dtype=np.float32)
    seg[:, 0], seg[:, 1], seg[:, 2], seg[:, 3] = starts[0], starts[1], ends[0], ends[1]
    counts = [a.shape[1] for a in drawn[0::2]]
    levels = np.repeat(np.arange(len(counts), dtype=np.int16), counts)
    return seg, starts[3].astype(np.float64), owner[starts[5].astype(np.intp)], levels


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
) -> Scene:
    """Place the structures of each batch at random centres and grow their branches."""
    lo, hi = preset.placement
    counts = [bt.count for bt in batches]
    kinds = [bt.spec.name for bt in batches for _ in range(bt.count)]
    circle_xy = rng.uniform(lo, hi, size=(len(kinds), 2))
    # Per structure, by batch: host flag, disc radius, L, W, depth, root branches, ramp start and end.
    per_batch = np.array([
        [bt.host, bt.spec.spore_radius, bt.spec.branch_length, bt.spec.branch_width, bt.spec.depth,
         bt.spec.root_branches, *bt.ramp[0], *bt.ramp[1]]
        for bt in batches
    ]).reshape(len(batches), 12)  # fmt: skip
    host, radius, L, W, D, K = np.repeat(per_batch, counts, axis=0).T[:6]
    ramp = np.repeat(per_batch[:, 6:], counts, axis=0)
    seg, width, owner, level = grow_branches(
        rng, preset.branching, circle_xy, L, W, D.astype(np.int64), K.astype(np.int64), np.arange(len(kinds))
    )
    return Scene(
        background=background,
        struct_kind=kinds,
        struct_host=host.astype(bool),
        circle_xy=circle_xy,
        circle_r=radius,
        struct_rgb=ramp_colours(ramp[:, :3], ramp[:, 3:], circle_xy[:, 1]),
        seg_xy=seg,
        seg_width=width,
        seg_struct=owner,
        seg_level=level,
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
