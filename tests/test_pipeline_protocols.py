"""Leave-one-class-out and shift robustness: orchestration on the toy model, and one real end-to-end
leave-one-class-out run with the lite model (slow)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import fungalzsl.models
from fungalzsl.errors import FungalError
from fungalzsl.pipeline.protocols import class_view, leave_one_class_out, shift_robustness
from keyword_model import COLOURS, GOOD, KeywordModel, make_colour_dataset, write_descriptions


@pytest.fixture
def toy_load_run(monkeypatch):
    monkeypatch.setattr(
        fungalzsl.models, "load_run", lambda d: (KeywordModel(), json.loads((d / "config.json").read_text())),
        raising=False,
    )  # fmt: skip


def test_class_view_symlinks_only_kept_classes(tmp_path):
    data = make_colour_dataset(tmp_path / "d", n=2, split="train")
    view = class_view(data, ["red", "blue"], tmp_path / "v", splits=("train", "val"))
    assert sorted(p.name for p in (view / "train").iterdir()) == ["blue", "red"]
    assert (view / "train" / "red").is_symlink() and not (view / "val").exists()
    from fungalzsl.images import list_split

    s = list_split(view, "train")
    assert s.classes == ["red", "blue"] and len(s) == 4
    class_view(data, ["red", "blue"], view)  # idempotent (resume)


def test_loco_trains_without_each_class_and_reports_it(tmp_path, toy_load_run):
    data = make_colour_dataset(tmp_path / "d", n=4, wrong_blue=1)
    make_colour_dataset(tmp_path / "d", n=4, wrong_blue=0, split="train")
    desc = write_descriptions(tmp_path / "train.jsonl", GOOD, "train-set")
    seen: list[tuple[list[str], set[str]]] = []

    def fake_train(view, descriptions, run, model, config, resume=False, overrides=None):
        # what a trainer with a class filter would see: only the kept classes, in images and texts
        classes = json.loads((view / "dataset.json").read_text())["classes"]
        texts = {json.loads(x)["class"] for x in descriptions.read_text().splitlines()}
        seen.append((sorted(os.listdir(view / "train")), texts))
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"model": model, "classes": classes, "status": "done"}))

    res = leave_one_class_out(data, desc, tmp_path / "loco", trainer=fake_train, n_boot=20, figures=False)
    assert [(sorted(cls), sorted(t)) for cls, t in seen] == [
        (["blue", "green"], ["blue", "green"]),
        (["blue", "red"], ["blue", "red"]),
        (["green", "red"], ["green", "red"]),
    ]
    rows = {r["held_out"]: r for r in res["rows"]}
    assert set(rows) == set(COLOURS)
    # the toy model ignores training; the one reddish blue image is the only error in every run
    assert rows["blue"]["held_out_recall"] == pytest.approx(3 / 4)
    assert rows["red"]["held_out_recall"] == 1.0 and rows["red"]["held_out_precision"] == pytest.approx(4 / 5)
    assert rows["red"]["seen_recall"] == pytest.approx(7 / 8)
    md = (tmp_path / "loco" / "loco.md").read_text()
    assert md.count("\n| ") == 5  # header, rule, 3 rows and "| blue | 0.917 [" in md
    assert (tmp_path / "loco" / "loco.csv").read_text().splitlines()[0].startswith("held_out,recall@1")
    # resumable: finished runs are not trained again
    seen.clear()
    leave_one_class_out(data, desc, tmp_path / "loco", trainer=fake_train, n_boot=20, figures=False)
    assert seen == []


def test_loco_user_errors(tmp_path):
    data = make_colour_dataset(tmp_path / "d", n=1)
    partial = write_descriptions(tmp_path / "p.jsonl", {"red": ["red"], "green": ["green"]})
    with pytest.raises(FungalError, match="no descriptions for class"):
        leave_one_class_out(data, partial, tmp_path / "o", trainer=lambda *a, **k: None)
    full = write_descriptions(tmp_path / "f.jsonl", GOOD)
    with pytest.raises(FungalError, match="unknown class"):
        leave_one_class_out(data, full, tmp_path / "o", classes=["purple"], trainer=lambda *a, **k: None)


STAGES = ["spore", "hyphae", "mycelium"]


def test_shift_generates_each_variant_and_reports_the_drop(tmp_path, toy_load_run):
    from fungalzsl.synth import generate_dataset

    train_data = tmp_path / "train-data"
    generate_dataset(train_data, "paper", num_images=6, size=32, seed=0, workers=1, progress=False)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "toy", "classes": STAGES, "data": str(train_data)}))
    # stored class embeddings: spore ≈ yellow, hyphae ≈ orange, mycelium ≈ red (in the toy's RGB space)
    emb = torch.nn.functional.normalize(
        torch.tensor([[1.0, 0.8, 0.1], [1.0, 0.45, 0.05], [0.8, 0.1, 0.1]]), dim=-1
    )
    save_file({"embeddings": emb}, str(run / "class_embeddings.safetensors"))
    res = shift_robustness(run, tmp_path / "shift", variants=["reference", "grayscale", "noise"], num_images=6,
                           seed=5, n_boot=20)  # fmt: skip
    assert [r["variant"] for r in res["rows"]] == ["reference", "grayscale", "noise"]
    ref = res["rows"][0]["recall@1"]
    for r in res["rows"]:
        assert r["n"] == 6 and r["drop"] == pytest.approx(ref - r["recall@1"])
    gray = next((tmp_path / "shift" / "data" / "grayscale" / "test").rglob("*.png"))
    a = np.asarray(Image.open(gray).convert("RGB")).astype(int)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    manifest = json.loads((tmp_path / "shift" / "data" / "noise" / "dataset.json").read_text())
    assert manifest["preset"]["settings"]["variation"]["noise_sd"] == 0.15 and manifest["seed"] == 5
    assert manifest["preset"]["settings"]["size"] == 32  # the run's training size, not the preset default
    assert "| grayscale |" in (tmp_path / "shift" / "shift.md").read_text()
    with pytest.raises(FungalError, match="training data's seed"):
        shift_robustness(run, tmp_path / "s2", seed=0)
    with pytest.raises(FungalError, match="unknown shift variant"):
        shift_robustness(run, tmp_path / "s2", variants=["sepia"])


@pytest.mark.slow
def test_loco_end_to_end_with_lite(tmp_path):
    """A real leave-one-class-out run: tiny generated data, the lite model, one epoch per held-out class."""
    from fungalzsl.synth import generate_dataset
    from fungalzsl.text.generate import generate_descriptions

    data = tmp_path / "data"
    generate_dataset(data, "paper", num_images=60, size=64, seed=0, workers=1, progress=False)
    desc = tmp_path / "bank.jsonl"
    generate_descriptions("bank", per_class=8, out=desc)
    res = leave_one_class_out(
        data, desc, tmp_path / "loco", classes=["mycelium"], n_boot=20, figures=False,
        overrides={"epochs": 1, "batch_size": 16, "progress": False, "image_size": 64},
    )  # fmt: skip
    (row,) = res["rows"]
    assert row["held_out"] == "mycelium" and row["n"] == 6
    assert 0.0 <= row["held_out_recall"] <= 1.0
    cfg = json.loads((tmp_path / "loco" / "runs" / "without-mycelium" / "config.json").read_text())
    assert cfg["classes"] == ["spore", "hyphae"] and cfg["status"] == "done"
    assert "| mycelium |" in (tmp_path / "loco" / "loco.md").read_text()


def test_loco_with_stacking_finds_the_held_out_class(tmp_path, monkeypatch):
    """``stack_budget``: each run's gamma comes from its own view's val images (held-out class absent),
    exactly as ``evaluate --stack-budget`` would fit it on that run."""
    from fungalzsl.eval import evaluate_run

    # green's text leans blue ("sea"), blue's own leans red ("dusk"): without stacking blue goes to green
    model = KeywordModel({"red": (1, 0, 0), "green": (0, 1, 0), "sea": (0, 0, 0.9), "dusk": (0.8, 0, 0.6)})
    monkeypatch.setattr(fungalzsl.models, "load_run", lambda d: (model, json.loads((d / "config.json").read_text())),
                        raising=False)  # fmt: skip
    data = make_colour_dataset(tmp_path / "d", n=3, wrong_blue=0)
    make_colour_dataset(data, n=3, wrong_blue=0, split="val")
    desc = write_descriptions(
        tmp_path / "d.jsonl", {"red": ["red"], "green": ["green sea"], "blue": ["dusk"]}
    )

    def fake_train(view, descriptions, run, model, config, resume=False, overrides=None):
        classes = json.loads((view / "dataset.json").read_text())["classes"]
        run.mkdir(parents=True)
        cfg = {"model": model, "classes": classes, "status": "done", "data": str(view),
               "descriptions": {"path": str(descriptions)}}  # fmt: skip
        (run / "config.json").write_text(json.dumps(cfg))

    kw = dict(classes=["blue"], trainer=fake_train, n_boot=20, figures=False)
    (plain,) = leave_one_class_out(data, desc, tmp_path / "loco", **kw)["rows"]
    assert plain["held_out_recall"] == 0.0 and plain["gamma"] is None and plain["held_out_row"] == [0, 3, 0]
    res = leave_one_class_out(data, desc, tmp_path / "loco", stack_budget=0.5, **kw)
    (row,) = res["rows"]
    # budget 0.5 of the 6 right val images (red, green): the 3 red ones may go, the green ones stay
    assert row["per_class_recall"] == {"red": 0.0, "green": 1.0, "blue": 1.0}
    assert row["seen_recall"] == pytest.approx(0.5) and res["stack_budget"] == 0.5
    direct = evaluate_run(tmp_path / "loco" / "runs" / "without-blue", data, tmp_path / "ev", "test", [desc],
                          baseline=False, record=False, n_boot=20, figures=False, stack_budget=0.5)  # fmt: skip
    assert row["gamma"] == direct["stacking"]["gamma"] > 0
    md = (tmp_path / "loco" / "loco.md").read_text()
    assert "seen-class budget 0.5" in md and f"| {row['gamma']:.3f} |" in md


def test_loco_bad_stack_budget_is_a_one_line_error_before_training(tmp_path):
    from typer.testing import CliRunner

    from fungalzsl.cli import app

    data = make_colour_dataset(tmp_path / "d", n=1)
    desc = write_descriptions(tmp_path / "f.jsonl", GOOD)
    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["loco", "--data", str(data), "--descriptions", str(desc), "--out", str(out),
                                 "--stack-budget", "1.5"])  # fmt: skip
    assert r.exit_code != 0 and "--stack-budget 1.5: must be in [0, 1)" in r.output
    assert "Traceback" not in r.output and not out.exists()
