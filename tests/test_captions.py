"""Grounded captions (synth.captions) and training on them (train.inputs, train.loss): deterministic,
true to the scene, images unchanged, and every caption of an image and description of its class a
positive."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

from fungalzsl.captionsfile import CAPTIONS_FILE
from fungalzsl.errors import FungalError
from fungalzsl.synth import generate_dataset, load_preset
from fungalzsl.synth.captions import image_captions, number, write_captions
from fungalzsl.synth.plan import Job
from fungalzsl.synth.sample import make_scene


def _images(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*.png")
    }


@pytest.fixture(scope="module")
def captioned(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("captions")
    generate_dataset(root / "plain", "paper", num_images=24, size=32, seed=5, progress=False)
    data = root / "data"
    generate_dataset(data, "paper", num_images=24, size=32, seed=5, progress=False)
    write_captions(data, progress=False)
    return data


def _rows(data: Path) -> list[dict]:
    return [json.loads(line) for line in (data / CAPTIONS_FILE).read_text().splitlines()]


def test_captions_leave_images_as_they_are_and_are_deterministic(captioned, tmp_path):
    assert _images(captioned) == _images(captioned.parent / "plain")
    first = (captioned / CAPTIONS_FILE).read_bytes()
    write_captions(captioned, progress=False)
    assert (captioned / CAPTIONS_FILE).read_bytes() == first


def test_captions_state_the_counts_depth_and_overlap_drawn(captioned):
    meta = {
        json.loads(r)["file_name"]: json.loads(r)
        for r in (captioned / "metadata.jsonl").read_text().splitlines()
    }
    rows = _rows(captioned)
    assert len(rows) == 24 and all(3 <= len(r["captions"]) <= 5 for r in rows)
    for r in rows:
        m = meta[r["file_name"]]
        f = r["facts"]
        assert f["structures"] == m["n_structures"] and f["segments"] <= m["n_segments"]
        assert f["depth"] == (m["max_level"] if r["label"] != "spore" else 0)
        assert {k: v["count"] for k, v in f["overlap"].items()} == json.loads(m["overlap"])
        assert r["captions"][0].startswith(number(m["n_structures"]))
        assert f"count {m['n_structures']} " in r["captions"][2]
        assert f"branching depth {f['depth']}" in r["captions"][2]
        for name in ("spore", "hyphae", "mycelium"):  # captions say what is drawn, never the class
            assert not any(name in c for c in r["captions"])
    assert any("plus" in r["captions"][0] for r in rows if r["label"] != "spore")


@pytest.mark.parametrize("label", ["germinating-spore", "budding-yeast", "sporulating-mycelium"])
def test_stage_captions_state_tubes_buds_and_spore_heads(label):
    preset = load_preset("paper").as_test_set(["germinating-spore", "sporulating-mycelium", "budding-yeast"])
    job = Job(index=4, split="test", label=label, label_id=preset.class_names.index(label))
    scene, _, _ = make_scene(preset, 1, job, "classes")
    caps = image_captions(preset, 1, job)["captions"]
    if label == "germinating-spore":
        tubes = scene.notes["germ_tubes"]
        assert f"count {len(tubes)} cells, {sum(tubes)} tubes" in caps[2]
        assert (
            f"{number(tubes.count(1))} with one short tube and {number(tubes.count(2))} with two" in caps[0]
        )
    elif label == "budding-yeast":
        assert f"{sum(scene.notes['buds'])} buds" in caps[2]
    else:
        n = scene.notes
        assert f"bearing {n['spore_heads']} heads and {n['spore_chains']} chains" in caps[0]
        assert re.search(rf"{n['network_spores']} spores", caps[2])


def test_positives_are_own_captions_and_same_class_descriptions():
    from fungalzsl.train.inputs import TrainInputs, caption_positives

    inputs = TrainInputs.__new__(TrainInputs)
    inputs.n_descriptions = 4  # texts 0-1 describe class 0, 2-3 class 1; 4.. are captions
    inputs.caption_ids = torch.tensor([[4, 5], [6, -1], [4, 7]])  # images 0 and 2 share caption 4
    image_idx = torch.tensor([0, 1, 2])
    labels = torch.tensor([0, 1, 0])
    text_idx = torch.tensor([5, 2, 4])  # image 0 got its caption 5, image 1 a description, image 2 caption 4
    pos = caption_positives(inputs, image_idx, text_idx, labels)
    assert pos.tolist() == [[True, False, True], [False, True, False], [False, False, True]]


def test_draw_pairs_picks_own_captions_and_is_unchanged_without_them():
    from fungalzsl.train.inputs import TrainInputs, draw_pairs

    inputs = TrainInputs.__new__(TrainInputs)
    inputs.text_ranges = [(0, 2), (2, 4)]
    inputs.train_labels = torch.tensor([0, 1, 0, 1, 0, 1])
    inputs.caption_ids = None
    keep = torch.arange(6)
    plain = draw_pairs(inputs, keep, 6, 0, 0, 0, 1)
    inputs.caption_ids = torch.tensor([[4 + i, -1] for i in range(6)])
    inputs.caption_share = 0.0
    assert [(a.tolist(), b.tolist()) for a, b in draw_pairs(inputs, keep, 6, 0, 0, 0, 1)] == [
        (a.tolist(), b.tolist()) for a, b in plain
    ]
    inputs.caption_share = 1.0
    ((images, texts),) = draw_pairs(inputs, keep, 6, 0, 0, 0, 1)
    assert (texts == images + 4).all()


def test_training_on_grounded_captions_end_to_end(captioned, tmp_path):
    from fungalzsl.train.loop import train_run
    from tiny_data import make_descriptions

    desc = make_descriptions(tmp_path / "d.jsonl")
    cfg = {"epochs": 1, "batch_size": 8, "unfreeze_every": 0, "image_size": 32, "embed_dim": 16,
           "progress": False, "warmup_steps": 0, "device": "cpu", "captions": "grounded", "caption_share": 0.7}  # fmt: skip
    train_run(captioned, desc, tmp_path / "run", "lite", cfg)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in x for x in lines)
    bare = tmp_path / "bare"
    generate_dataset(bare, "paper", num_images=12, size=32, seed=1, progress=False)
    with pytest.raises(FungalError, match=r"no captions\.jsonl"):
        train_run(bare, desc, tmp_path / "run2", "lite", cfg)


def test_generate_captions_command_writes_the_file_and_refuses_other_folders(tmp_path):
    from typer.testing import CliRunner

    from fungalzsl.cli import app

    data = tmp_path / "d"
    r = CliRunner().invoke(app, ["generate", "--out", str(data), "-n", "3", "--size", "32", "--captions"])
    assert r.exit_code == 0, r.output
    assert len((data / CAPTIONS_FILE).read_text().splitlines()) == 3
    r = CliRunner().invoke(app, ["generate", "captions", str(tmp_path)])
    assert r.exit_code == 2 and "not a finished dataset" in r.output and "Traceback" not in r.output


def test_coverage_counts_the_grid_cells_touched():
    import numpy as np

    from fungalzsl.synth.captions import coverage
    from fungalzsl.synth.geometry import Scene

    scene = Scene(
        background=np.ones(3), struct_kind=["a", "b"], struct_host=np.array([True, False]),
        circle_xy=np.array([[0.5, 0.5], [0.1, 0.1]]), circle_r=np.array([0.0, 0.0]), struct_rgb=np.zeros((2, 3)),
        seg_xy=np.array([[0.0, 0.505, 0.999, 0.505], [0.3, 0.0, 0.3, 0.999]], np.float32), seg_width=np.ones(2),
        seg_struct=np.array([0, 1]), seg_level=np.zeros(2, np.int16),
    )  # fmt: skip
    assert coverage(scene, np.array([True, False])) == 64 / 64**2  # one full row of the 64 x 64 grid
    assert coverage(scene) == (64 + 63) / 64**2  # plus a column, crossing it once
