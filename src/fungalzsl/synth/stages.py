"""Growth stages beyond the paper's three, drawn from the same parts (discs, ellipses, strokes, the
branch trees of ``geometry.grow_branches``), for true zero-shot tests: a model trained on spore,
hyphae and mycelium meets them only through their descriptions (``fungalzsl novel``).

* ``germinating-spore``: spores of radius r, each with one or two short germ tubes (the second roughly
  opposite the first, as in bipolar germination); a tube is a slightly curved three-segment stroke of
  total length U(0.5, 1.8) spore diameters, so always shorter than two diameters;
* ``sporulating-mycelium``: a branch-tree network (the class's θ) in the ramp's first colour, bearing at
  some branch tips chains (3–6 spores in a line continuing the branch) or heads (a tip spore ringed by
  5–8 spores) of small spores (radius r) in the ramp's second colour;
* ``budding-yeast``: ovoid cells (ellipses, aspect U(0.6, 0.8)) of radius U(0.8, 1.2)·r, each with
  0, 1 or 2 buds (radius ×U(0.35, 0.6)) at the poles of its long axis.

Each builder draws only from the image's own stream, after time and temperature, and records what it
drew in ``Scene.notes`` (germ tubes, buds, spore chains and heads) for the grounded captions
(``synth.captions``). Structures are the class's own (``struct_host``); spores of a sporulating
network are structures of their own, with a disc and no branches."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fungalzsl.synth.colour import ramp_colours
from fungalzsl.synth.geometry import Scene, grow_branches
from fungalzsl.synth.preset import ClassSpec, GeneratorPreset

Ramp = tuple[np.ndarray, np.ndarray]
TUBE_SEGMENTS = 3
TUBE_LENGTH_DIAMETERS = (0.5, 1.8)


def _scene(
    preset: GeneratorPreset,
    spec: ClassSpec,
    background: np.ndarray,
    discs: tuple[np.ndarray, np.ndarray, np.ndarray],
    segs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ellipses: tuple[np.ndarray, np.ndarray] | None = None,
    notes: dict | None = None,
) -> Scene:
    xy, r, rgb = discs
    seg, width, owner, level = segs
    return Scene(
        background=background,
        struct_kind=[spec.name] * len(r),
        struct_host=np.ones(len(r), dtype=bool),
        circle_xy=xy,
        circle_r=r,
        struct_rgb=rgb,
        seg_xy=np.ascontiguousarray(seg, dtype=np.float32).reshape(-1, 4),
        seg_width=np.asarray(width, dtype=np.float64),
        seg_struct=np.asarray(owner, dtype=np.int64),
        seg_level=np.asarray(level, dtype=np.int16),
        line_alpha=preset.line_alpha,
        circle_aspect=None if ellipses is None else ellipses[0],
        circle_angle=None if ellipses is None else ellipses[1],
        notes=notes or {},
    )


def germinating_spores(
    preset: GeneratorPreset, spec: ClassSpec, rng: np.random.Generator, ramp: Ramp, background: np.ndarray
) -> Scene:
    lo, hi = preset.placement
    n, r = spec.n_structures, spec.spore_radius
    xy = rng.uniform(lo, hi, size=(n, 2))
    tubes = rng.integers(1, 3, size=n)  # one or two germ tubes per spore
    owner = np.repeat(np.arange(n), tubes)
    first = rng.uniform(0, 2 * np.pi, size=n)
    turn = np.where(np.arange(owner.size) == np.searchsorted(owner, owner), 0.0, 1.0)  # second tube
    heading = first[owner] + turn * (np.pi + rng.uniform(-0.6, 0.6, size=owner.size))
    length = 2 * r * rng.uniform(*TUBE_LENGTH_DIAMETERS, size=owner.size)
    bends = rng.normal(0, 0.3, size=(owner.size, TUBE_SEGMENTS))
    bends[:, 0] = 0.0
    angle = heading[:, None] + np.cumsum(bends, axis=1)
    step = (length / TUBE_SEGMENTS)[:, None]
    start = xy[owner] + r * np.stack((np.cos(heading), np.sin(heading)), axis=1)
    ex = start[:, :1] + np.cumsum(step * np.cos(angle), axis=1)
    ey = start[:, 1:] + np.cumsum(step * np.sin(angle), axis=1)
    bx = np.concatenate((start[:, :1], ex[:, :-1]), axis=1)
    by = np.concatenate((start[:, 1:], ey[:, :-1]), axis=1)
    seg = np.stack((bx, by, ex, ey), axis=2).reshape(-1, 4)
    segs = (
        seg,
        np.full(seg.shape[0], spec.branch_width),
        np.repeat(owner, TUBE_SEGMENTS),
        np.tile(np.arange(TUBE_SEGMENTS), owner.size),
    )
    rgb = ramp_colours(ramp[0][None], ramp[1][None], xy[:, 1])
    notes = {
        "germ_tubes": tubes.tolist(),
        "tube_length_diameters": np.round(length / (2 * r), 3).tolist(),
    }
    return _scene(preset, spec, background, (xy, np.full(n, r), rgb), segs, notes=notes)


def _tips(
    seg: np.ndarray, level: np.ndarray, owner: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """Indices of ``k`` segments of the deepest levels (branch tips), spread over the structures."""
    deep = np.flatnonzero(level >= max(int(level.max()) - 1, 0)) if level.size else np.zeros(0, np.int64)
    if deep.size == 0:
        return deep
    return rng.choice(deep, size=min(k, deep.size), replace=False)


def sporulating_network(
    preset: GeneratorPreset, spec: ClassSpec, rng: np.random.Generator, ramp: Ramp, background: np.ndarray
) -> Scene:
    lo, hi = preset.placement
    n = spec.n_structures
    centre = rng.uniform(lo, hi, size=(n, 2))
    seg, width, owner, level = grow_branches(
        rng, preset.branching, centre, np.full(n, spec.branch_length), np.full(n, spec.branch_width),
        np.full(n, spec.depth), np.full(n, spec.root_branches), np.arange(n),
    )  # fmt: skip
    tips = _tips(seg, level, owner, 4 * n, rng)
    heads = rng.uniform(size=tips.size) < 0.5
    rs = spec.spore_radius
    spores: list[np.ndarray] = []
    for t, head in zip(tips.tolist(), heads.tolist()):
        x0, y0, x1, y1 = seg[t].astype(np.float64)
        a = np.arctan2(y1 - y0, x1 - x0)
        if head:  # a tip spore ringed by 5-8 spores
            m = int(rng.integers(5, 9))
            ring = a + np.linspace(0, 2 * np.pi, m, endpoint=False)
            pts = np.stack((x1 + 2.1 * rs * np.cos(ring), y1 + 2.1 * rs * np.sin(ring)), axis=1)
            spores.append(np.vstack(([x1, y1], pts)))
        else:  # a chain continuing the branch
            m = int(rng.integers(3, 7))
            d = rs * (1 + 2.1 * np.arange(m))
            spores.append(np.stack((x1 + d * np.cos(a), y1 + d * np.sin(a)), axis=1))
    pts = np.vstack(spores) if spores else np.zeros((0, 2))
    xy = np.vstack((centre, pts))
    r = np.concatenate((np.full(n, 0.0), np.full(len(pts), rs)))
    rgb = np.vstack((np.repeat(ramp[0][None], n, axis=0), np.repeat(ramp[1][None], len(pts), axis=0)))
    notes = {
        "spore_heads": int(heads.sum()),
        "spore_chains": int((~heads).sum()),
        "network_spores": len(pts),
        "networks": n,
    }
    return _scene(preset, spec, background, (xy, r, rgb), (seg, width, owner, level), notes=notes)


def budding_cells(
    preset: GeneratorPreset, spec: ClassSpec, rng: np.random.Generator, ramp: Ramp, background: np.ndarray
) -> Scene:
    lo, hi = preset.placement
    n = spec.n_structures
    xy = rng.uniform(lo, hi, size=(n, 2))
    r = spec.spore_radius * rng.uniform(0.8, 1.2, size=n)
    aspect = rng.uniform(0.6, 0.8, size=n)
    angle = rng.uniform(0, np.pi, size=n)
    buds = rng.choice(3, size=n, p=[0.2, 0.5, 0.3])
    mother = np.repeat(np.arange(n), buds)
    pole = np.where(np.arange(mother.size) == np.searchsorted(mother, mother), 1.0, -1.0)
    rb = r[mother] * rng.uniform(0.35, 0.6, size=mother.size)
    # draw_disc rotates in pixel space (y down): the long axis points (cos φ, −sin φ) in unit space.
    reach = pole * (r[mother] + 0.7 * rb)
    bxy = xy[mother] + reach[:, None] * np.stack((np.cos(angle[mother]), -np.sin(angle[mother])), axis=1)
    all_xy = np.vstack((xy, bxy))
    rgb = ramp_colours(ramp[0][None], ramp[1][None], all_xy[:, 1])
    ellipses = (
        np.concatenate((aspect, rng.uniform(0.8, 0.95, size=mother.size))),
        np.concatenate((angle, angle[mother])),
    )
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int16))
    notes = {"cells": n, "buds": buds.tolist()}
    return _scene(preset, spec, background, (all_xy, np.concatenate((r, rb)), rgb), empty, ellipses, notes)


BUILDERS: dict[str, Callable[..., Scene]] = {
    "germinating-spore": germinating_spores,
    "sporulating-mycelium": sporulating_network,
    "budding-yeast": budding_cells,
}


def stage_scene(
    preset: GeneratorPreset,
    spec: ClassSpec,
    rng: np.random.Generator,
    background: np.ndarray,
    ramp: Ramp,
) -> Scene:
    """The scene of one image of a class with a ``kind`` (see the module docstring), in colour ``ramp``."""
    assert spec.kind is not None
    return BUILDERS[spec.kind](preset, spec, rng, ramp, background)
