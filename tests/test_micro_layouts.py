"""Micrograph structures of style_algorithm 5: packed masses and chains of touching spores, thick
septate hyphae, the pink stain cast (synth.spores, synth.micro, synth.optics)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from fungalzsl.synth.micro import micro_decor, micro_scene
from fungalzsl.synth.optics import STAIN_WEIGHTS, STAINS, sample_optics
from fungalzsl.synth.render import _PT_PER_SIDE
from fungalzsl.synth.spores import SPORE_LAYOUTS, packed_spores, spore_chain, spore_chains


def test_packed_spores_touch_their_neighbours_and_fill_a_clump_or_the_field():
    whole = 0
    for seed in range(40):
        xy, r, aspect, _ = packed_spores(np.random.default_rng(seed))
        assert xy.shape[0] == r.size == aspect.size and ((aspect > 0.45) & (aspect <= 1.0)).all()
        if xy.shape[0] < 6:
            continue
        dist, j = cKDTree(xy).query(xy, k=2)
        gap = dist[:, 1] / (r + r[j[:, 1]])  # 1: the two cells just touch
        assert 0.75 < np.median(gap) < 1.2, (seed, np.median(gap))
        inside = (xy > 0).all(1) & (xy < 1).all(1)
        whole += np.ptp(xy[inside, 0]) > 0.8 and np.ptp(xy[inside, 1]) > 0.8
    assert 8 <= whole <= 36  # whole fields and single clumps both occur


def test_spore_chains_are_touching_cells_elongated_along_their_chain():
    for seed in range(20):
        xy, r, aspect, angle = spore_chain(np.random.default_rng(seed), 0.05)
        step = np.diff(xy, axis=0)
        length = np.hypot(step[:, 0], step[:, 1])
        assert xy.shape[0] >= 3 and np.allclose(length / (r[1:] + r[:-1]), 1.0, atol=0.06)
        # the long axis (the cell's angle) follows the chain's direction
        along = np.abs(np.cos(np.arctan2(step[:, 1], step[:, 0]) - angle[1:]))
        assert along.min() > 0.95 and (aspect < 1).all()
    xy, r, _, _ = spore_chains(np.random.default_rng(0))
    assert xy.shape[0] >= 3 and np.ptp(r) / r.mean() < 0.25  # one cell size per image


def test_spore_micrographs_use_every_layout_and_hyphae_range_from_thin_to_thick_septate_tubes():
    counts, widths, septa = [], [], 0
    for seed in range(200):
        counts.append(len(micro_scene("spore", np.random.default_rng(seed), np.ones(3)).struct_kind))
        h = micro_scene("hyphae", np.random.default_rng(seed), np.ones(3))
        hypha = np.isin(h.seg_struct, np.flatnonzero(h.struct_host))
        widths.append(h.seg_width[hypha].max() / _PT_PER_SIDE)  # fraction of the field's side
        septa += micro_decor(h, np.random.default_rng(seed), 0.0).septa.shape[0] > 0
    counts = np.array(counts)
    assert (counts == 1).any() and (counts > 150).any() and sum(SPORE_LAYOUTS.values()) < 1
    widths = np.array(widths)
    assert widths.min() < 0.015 and widths.max() > 0.07 and (widths > 0.045).mean() > 0.2
    assert septa > 120  # most hyphae images show cross walls


def test_the_pink_cast_is_one_of_the_stains_and_shows_as_a_magenta_field():
    assert "pink" in STAINS and abs(sum(STAIN_WEIGHTS) - 1) < 1e-9
    looks = [sample_optics(np.random.default_rng(seed)) for seed in range(600)]
    pink = [o for o in looks if o.stain == "pink" and o.imaging == "brightfield"]
    share = sum(o.stain == "pink" for o in looks) / len(looks)
    assert abs(share - STAIN_WEIGHTS[STAINS.index("pink")]) < 0.05
    assert pink and all(
        o.background[0] > o.background[1] and o.background[2] >= o.background[1] for o in pink
    )
