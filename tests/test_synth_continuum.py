"""The growth continuum (``generate --mode continuum``): train images along the timeline, val and test
as in --mode classes, labels by the class slot, captions that state what is drawn (no stage names)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fungalzsl.cli import app
from fungalzsl.errors import FungalError
from fungalzsl.synth import generate_dataset, load_preset
from fungalzsl.synth.captions import image_captions
from fungalzsl.synth.continuum import continuum_spec, growth_position
from fungalzsl.synth.generate import plan
from fungalzsl.synth.plan import Job, plan_classes
from fungalzsl.synth.sample import make_image, make_scene

PAPER = load_preset("paper")


def _job(label: str, index: int, split: str = "train") -> Job:
    return Job(index=index, split=split, label=label, label_id=PAPER.class_names.index(label))


def test_theta_is_each_class_at_its_slot_middle_and_grows_in_between():
    for k, c in enumerate(PAPER.classes):
        spec, _ = continuum_spec(PAPER, k + 0.5)
        assert (spec.depth, spec.branch_length, spec.root_branches) == (
            c.depth,
            c.branch_length,
            c.root_branches,
        )
    assert continuum_spec(PAPER, 0.1)[0].depth == 0  # early spores: no tubes yet
    us = np.linspace(0.55, 2.5, 30)
    specs = [continuum_spec(PAPER, u)[0] for u in us]
    assert all(s.depth >= 1 for s in specs)  # from the spore slot's middle on, every cell has sprouted
    for key in ("depth", "branch_length", "root_branches"):
        vals = [getattr(s, key) for s in specs]
        assert vals == sorted(vals), key  # growth never goes back
    assert growth_position(PAPER, "spore", 15.0) == pytest.approx(0.5)
    assert growth_position(PAPER, "mycelium", 100.0) < 3.0


def test_train_images_change_val_and_test_images_stay_the_papers():
    for split, same in (("train", False), ("val", True), ("test", True)):
        diffs = []
        for i, label in enumerate(["spore", "hyphae", "mycelium"] * 2):
            job = _job(label, 30 + i, split)
            a, row = make_image(PAPER, 0, job, 48, mode="continuum")
            b, _ = make_image(PAPER, 0, job, 48, mode="classes")
            assert np.array_equal(a, make_image(PAPER, 0, job, 48, mode="continuum")[0])  # deterministic
            assert row["label"] == label and 0 <= row["growth_position"] < 3
            assert row["continuum"] is (split == "train")
            diffs.append(not np.array_equal(a, b))
        assert (not any(diffs)) if same else any(diffs), split


def test_no_test_only_stage_is_drawn_and_no_caption_names_one():
    stage_words = ("germinat", "sporulat", "budding", "yeast")
    kinds, tube_captions = set(), 0
    for i in range(0, 60):
        label = PAPER.class_names[i % 3]
        scene, _, _ = make_scene(PAPER, 0, _job(label, i), "continuum")
        kinds.update(scene.struct_kind)
        assert not scene.notes.keys() - {"growth_position"}  # no germ-tube, bud or spore-head builder
        caps = image_captions(PAPER, 0, _job(label, i), "continuum")["captions"]
        assert not any(w in c.lower() for c in caps for w in stage_words)
        tube_captions += any("short thin tubes" in c for c in caps)
    assert kinds <= set(PAPER.class_names)
    assert tube_captions > 0  # sprouting spores are captioned by what they show


def test_plan_is_the_classes_plan_and_dataset_records_the_mode(tmp_path):
    assert [j.to_dict() for j in plan(PAPER.model_copy(update={"num_images": 12}), "continuum", 0)] == [
        j.to_dict() for j in plan_classes(PAPER, 12)
    ]
    out = generate_dataset(
        tmp_path / "d", "paper", num_images=9, size=32, seed=0, mode="continuum", progress=False
    )
    manifest = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert manifest["mode"] == "continuum" and out["num_images"] == 9
    rows = [json.loads(line) for line in (tmp_path / "d" / "metadata.jsonl").read_text().splitlines()]
    assert all("growth_position" in r for r in rows)


def test_refusals_are_one_line(tmp_path):
    odd = load_preset("paper").as_test_set(["spore", "germinating-spore"])
    with pytest.raises(FungalError, match="continuum"):
        plan(odd, "continuum", 0)
    res = CliRunner().invoke(
        app, ["generate", "--out", str(tmp_path / "m"), "--num-images", "6", "--size", "32",
              "--mode", "continuum", "--style", "micrograph"],
    )  # fmt: skip
    assert res.exit_code != 0 and "Traceback" not in res.output and "continuum" in res.output
