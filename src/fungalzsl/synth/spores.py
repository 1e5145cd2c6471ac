"""Where a spore micrograph's cells lie (``synth.micro`` draws them): spread or loosely clumped, packed
masses of touching cells, or chains of touching cells. Each layout returns centres (n, 2), radii,
aspects and angles, in the unit square (y up), drawn from the structures' stream it is given."""

from __future__ import annotations

import numpy as np

# How a spore micrograph lays out its cells (the rest: spread or loosely clumped, 1-300 cells).
SPORE_LAYOUTS = {"packed": 0.35, "chains": 0.15}


def spread_spores(rng: np.random.Generator, n: int, r: float, spread: float) -> tuple[np.ndarray, ...]:
    """Centres (clumped or spread), radii, aspects and angles of ``n`` cells of mean radius ``r``."""
    if n == 1:
        xy = rng.uniform(0.3, 0.7, size=(1, 2))
    elif rng.uniform() < 0.5:
        xy = rng.uniform(-0.05, 1.05, size=(n, 2))
    else:  # clumps, as spores lie in a mount
        centres = rng.uniform(0.1, 0.9, size=(int(rng.integers(1, 5)), 2))
        xy = centres[rng.integers(0, centres.shape[0], size=n)] + rng.normal(0, spread, size=(n, 2))
    radius = r * rng.uniform(0.8, 1.2, size=n)
    elong = rng.uniform(0.45, 1.0) if rng.uniform() < 0.6 else 1.0
    aspect = np.clip(elong * rng.uniform(0.9, 1.1, size=n), 0.35, 1.0)
    return xy, radius, aspect, rng.uniform(0, np.pi, size=n)


def packed_spores(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """A packed mass of touching cells: a jittered hexagonal lattice of spacing ≈ one diameter, over
    the whole field (half the time) or inside one irregular clump, a share of the sites left empty."""
    r = float(np.exp(rng.uniform(np.log(0.03), np.log(0.16))))
    d = 2 * r * rng.uniform(0.92, 1.08)
    rows, cols = np.mgrid[0 : int(1.3 / (d * 0.866)) + 2, 0 : int(1.3 / d) + 2]
    xy = np.stack(((cols + 0.5 * (rows % 2)) * d - 0.15, rows * d * 0.866 - 0.15), axis=-1).reshape(-1, 2)
    xy = xy + rng.normal(0, 0.12 * d, size=xy.shape)
    if rng.uniform() < 0.5:  # one clump, its edge an irregular closed curve
        c, big = rng.uniform(0.3, 0.7, size=2), rng.uniform(0.25, 0.55)
        k, phase, amp = int(rng.integers(2, 6)), rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.3)
        rel = xy - c
        theta = np.arctan2(rel[:, 1], rel[:, 0])
        xy = xy[np.hypot(rel[:, 0], rel[:, 1]) < big * (1 + amp * np.sin(k * theta + phase))]
    xy = xy[rng.uniform(size=xy.shape[0]) >= rng.uniform(0.0, 0.3)]
    if xy.shape[0] == 0:
        xy = rng.uniform(0.3, 0.7, size=(1, 2))
    n = xy.shape[0]
    aspect = np.clip(rng.uniform(0.8, 1.0) * rng.uniform(0.92, 1.08, size=n), 0.5, 1.0)
    return xy, r * rng.uniform(0.85, 1.05, size=n), aspect, rng.uniform(0, np.pi, size=n)


def spore_chains(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """A few short, gently curving chains of touching cells (:func:`spore_chain`), one cell size."""
    r = float(np.exp(rng.uniform(np.log(0.02), np.log(0.08))))
    parts = [spore_chain(rng, r) for _ in range(int(rng.integers(1, 7)))]
    return tuple(np.concatenate(p) for p in zip(*parts))


def spore_chain(rng: np.random.Generator, r: float) -> tuple[np.ndarray, ...]:
    """3-11 touching cells of radius ≈ ``r`` in a row, each elongated along the chain."""
    m = int(rng.integers(3, 12))
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.15, size=m))
    radius = r * rng.uniform(0.9, 1.1, size=m)
    # each step is the two cells' radii, so neighbours touch whatever their sizes
    step = np.concatenate(([0.0], radius[1:] + radius[:-1])) * rng.uniform(0.95, 1.05)
    xy = rng.uniform(0.05, 0.95, size=2) + np.cumsum(
        step[:, None] * np.stack((np.cos(heading), np.sin(heading)), 1), 0
    )
    return xy, radius, np.full(m, rng.uniform(0.6, 0.95)), heading
