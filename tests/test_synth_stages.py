"""The test-only growth stages (synth.stages): what each draws, determinism, and that they stay out of
every dataset the paper preset makes."""

from __future__ import annotations

import numpy as np
import pytest

from fungalzsl.errors import FungalError
from fungalzsl.synth import load_preset, with_overrides
from fungalzsl.synth.plan import Job, plan_classes
from fungalzsl.synth.sample import make_image, make_scene
from fungalzsl.synth.stages import TUBE_LENGTH_DIAMETERS

NOVEL = ["germinating-spore", "sporulating-mycelium", "budding-yeast"]


@pytest.fixture(scope="module")
def novel_preset():
    return load_preset("paper").as_test_set(NOVEL)


def _job(preset, label, index):
    return Job(index=index, split="test", label=label, label_id=preset.class_names.index(label))


def test_paper_preset_keeps_its_classes_and_hash_with_test_only_stages():
    p = load_preset("paper")
    assert p.class_names == ["spore", "hyphae", "mycelium"]
    assert p.test_only_names == NOVEL
    assert p.hash() == "bb336275fdef436f"  # the hash before test-only classes existed
    assert "test_only" not in p.to_dict() and all("kind" not in c for c in p.to_dict()["classes"])
    # overrides keep them; a dataset plan never contains them
    assert with_overrides(p, palette="random").test_only_names == NOVEL
    assert {j.label for j in plan_classes(p, 30)} == {"spore", "hyphae", "mycelium"}


@pytest.mark.parametrize("label", NOVEL)
def test_each_stage_renders_deterministically_and_differs_between_images(novel_preset, label):
    a, row = make_image(novel_preset, 3, _job(novel_preset, label, 7), 64)
    b, _ = make_image(novel_preset, 3, _job(novel_preset, label, 7), 64)
    c, _ = make_image(novel_preset, 3, _job(novel_preset, label, 8), 64)
    assert a.shape == (64, 64, 3) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert (a < 250).any(axis=2).mean() > 0.005  # something is drawn on the white field
    assert row["label"] == label


def test_germinating_spores_have_one_or_two_tubes_shorter_than_two_diameters(novel_preset):
    spec = novel_preset.spec("germinating-spore")
    for i in range(20):
        scene, _, _ = make_scene(novel_preset, 0, _job(novel_preset, "germinating-spore", i), "classes")
        tubes = np.array(scene.notes["germ_tubes"])
        assert len(tubes) == spec.n_structures and set(tubes.tolist()) <= {1, 2}
        seg = scene.seg_xy.astype(np.float64)
        per_tube = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]).reshape(-1, 3).sum(1)
        assert per_tube.size == tubes.sum()
        diam = per_tube / (2 * spec.spore_radius)
        assert (diam >= TUBE_LENGTH_DIAMETERS[0] - 1e-4).all() and (diam < 2.0).all()
        np.testing.assert_allclose(diam, scene.notes["tube_length_diameters"], atol=2e-3)


def test_sporulating_network_bears_spores_at_branch_tips(novel_preset):
    scene, _, _ = make_scene(novel_preset, 0, _job(novel_preset, "sporulating-mycelium", 1), "classes")
    n = scene.notes
    assert n["spore_heads"] + n["spore_chains"] > 0 and scene.n_segments > 100
    spores = scene.circle_r > 0
    assert spores.sum() == n["network_spores"]
    # heads sit on branch ends; every spore of a chain or head lies within 12 spore radii of one
    rs = novel_preset.spec("sporulating-mycelium").spore_radius
    ends = scene.seg_xy[:, 2:].astype(np.float64)
    d = np.min(np.hypot(*(scene.circle_xy[spores][:, None, :] - ends[None]).transpose(2, 0, 1)), axis=1)
    assert (d < 1e-5).sum() >= n["spore_heads"]
    assert (d <= 12 * rs).all()


def test_budding_yeast_cells_are_ovoid_with_buds_at_their_poles(novel_preset):
    scene, _, _ = make_scene(novel_preset, 0, _job(novel_preset, "budding-yeast", 2), "classes")
    cells, buds = scene.notes["cells"], scene.notes["buds"]
    assert len(scene.struct_kind) == cells + sum(buds) and scene.n_segments == 0
    assert (scene.circle_aspect[:cells] < 0.81).all()
    assert (scene.circle_r[cells:] < scene.circle_r[:cells].max()).all()


def test_stages_refuse_photographic_styles(tmp_path):
    from fungalzsl.synth import generate_dataset

    preset = with_overrides(load_preset("paper").as_test_set(NOVEL), style="micrograph")
    with pytest.raises(FungalError, match="paper style only"):
        generate_dataset(tmp_path / "x", preset, num_images=3, size=32, progress=False)
