"""One epoch convention (counted from 1 wherever users see it, old 0-based runs still read right) and
the multi-positive loss's floor: derived in train/loss.py, checked against a perfect model here, then
said on the console, in config.json, in the report and counted in ``fungalzsl table``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from fungalzsl.rundir import best_epoch
from fungalzsl.train.loss import MultiPositiveContrastiveLoss, balanced_floor, multi_positive_floor
from fungalzsl.train.progress import finish_line
from fungalzsl.train.records import epochs_from_one


def _perfect(labels: torch.Tensor, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """A perfect model: every image and text of class k is the same unit vector e_k."""
    x = F.one_hot(labels, dim).double()
    return x, x.clone()


@pytest.mark.parametrize(("batch", "classes"), [(63, 3), (64, 4), (6, 3), (512, 2)])
def test_a_perfect_model_on_a_balanced_batch_sits_on_the_floor(batch: int, classes: int) -> None:
    labels = torch.arange(batch) % classes
    image, text = _perfect(labels)
    out = MultiPositiveContrastiveLoss()(image, text, labels, torch.tensor(100.0, dtype=torch.float64))
    assert abs(float(out["loss"]) - balanced_floor(batch, classes)) < 1e-3
    assert abs(float(out["loss"]) - 2 * math.log(batch / classes)) < 1e-3
    assert float(out["floor"]) == pytest.approx(balanced_floor(batch, classes), abs=1e-12)


def test_the_floor_of_an_unbalanced_batch_is_twice_the_mean_log_class_count() -> None:
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2])  # counts 4, 2, 1
    want = 2 * (4 * math.log(4) + 2 * math.log(2) + math.log(1)) / 7
    assert float(multi_positive_floor(labels)) == pytest.approx(want, abs=1e-12)
    image, text = _perfect(labels)
    out = MultiPositiveContrastiveLoss()(image, text, labels, torch.tensor(100.0, dtype=torch.float64))
    assert float(out["loss"]) == pytest.approx(want, abs=1e-3)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=2, max_size=24), st.integers(0, 10_000), st.floats(1.0, 100.0))
def test_no_batch_goes_below_its_floor(labels: list[int], seed: int, scale: float) -> None:
    y = torch.tensor(labels)
    g = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(len(labels), 5, generator=g, dtype=torch.float64), dim=-1)
    text = F.normalize(torch.randn(len(labels), 5, generator=g, dtype=torch.float64), dim=-1)
    out = MultiPositiveContrastiveLoss()(image, text, y, torch.tensor(scale, dtype=torch.float64))
    assert float(out["loss"]) >= float(out["floor"]) - 1e-9


def test_finish_line_names_the_floor_only_when_the_loss_has_one() -> None:
    line = finish_line({"final_train_loss": 6.1404, "loss_floor": 6.1234}, 64, 3)
    assert line.startswith("final loss 6.14 (floor 6.12 for batch 64, 3 classes")
    assert finish_line({"final_train_loss": 0.5, "loss_floor": None}, 64, 3) == "final loss 0.50"


def test_old_runs_counted_epochs_from_zero() -> None:
    assert best_epoch({"best_epoch": 0}) == 1  # before "epoch_base"
    assert best_epoch({"best_epoch": 3, "epoch_base": 1}) == 3
    assert best_epoch({}) is None
    old = [
        {"type": "step", "epoch": 0, "step": 1},
        {"type": "epoch", "epoch": 0},
        {"type": "epoch", "epoch": 1},
    ]
    assert [r["epoch"] for r in epochs_from_one(old)] == [1, 1, 2]
    new = [{"type": "epoch", "epoch": 1}, {"type": "epoch", "epoch": 2}]
    assert epochs_from_one(new) == new


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, str]:
    from fungalzsl.train.loop import train_run
    from tiny_data import make_dataset, make_descriptions

    root = tmp_path_factory.mktemp("epochs")
    data = make_dataset(root / "data", {"train": 4, "val": 2, "test": 2})
    desc = make_descriptions(root / "d.jsonl")
    cfg = {"epochs": 2, "batch_size": 6, "unfreeze_every": 1, "unfreeze_max": {"image": 1, "text": 0},
           "image_size": 32, "embed_dim": 16, "progress": True, "lr": 5e-3, "warmup_steps": 0,
           "device": "cpu"}  # fmt: skip
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        train_run(data, desc, root / "run", "lite", cfg)
    return root / "run", data, err.getvalue()


def test_console_config_and_metrics_count_epochs_from_one(trained) -> None:
    run, _, console = trained
    config = json.loads((run / "config.json").read_text())
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in recs if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and {r["epoch"] for r in recs} == {1, 2}
    best = [r["epoch"] for r in epochs if r["best"]][-1]
    assert config["epoch_base"] == 1 and config["best_epoch"] == best and best_epoch(config) == best
    assert "epoch 1: loss" in console and "epoch 2: loss" in console and "epoch 0" not in console
    # 12 training images of 3 classes: two batches of 6, whose floors are averaged like the losses
    assert config["loss_floor"] == pytest.approx(epochs[-1]["train_loss_floor"])
    assert config["final_train_loss"] == pytest.approx(epochs[-1]["train_loss"])
    assert 0 < config["loss_floor"] <= 2 * math.log(6) and config["final_train_loss"] >= config["loss_floor"]
    assert (
        f"final loss {config['final_train_loss']:.2f} (floor {config['loss_floor']:.2f} for batch 6, 3 classes"
        in console
    )


def test_report_and_table_say_the_best_epoch_and_the_floor(trained, tmp_path: Path) -> None:
    from fungalzsl.eval import evaluate_run
    from fungalzsl.eval.table import table_markdown, table_row

    run, data, _ = trained
    config = json.loads((run / "config.json").read_text())
    metrics = evaluate_run(run, data, tmp_path / "eval", n_boot=20, baseline=False)
    t = metrics["training"]
    assert (t["best_epoch"], t["epochs_run"], t["loss_floor"]) == (
        config["best_epoch"],
        2,
        config["loss_floor"],
    )
    report = (tmp_path / "eval" / "report.md").read_text()
    assert f"best epoch {config['best_epoch']} of 2 (counted from 1)" in report
    assert f"cannot go below {config['loss_floor']:.2f} on these batches (6 images of 3 classes" in report
    row = table_row(run)
    assert row["best_epoch"] == config["best_epoch"]
    assert f"| {config['best_epoch']} of 2 |" in table_markdown([row])

    # a run written before epochs were counted from 1 reads the same
    old = {k: v for k, v in config.items() if k != "epoch_base"} | {"best_epoch": config["best_epoch"] - 1}
    (run / "config.json").write_text(json.dumps(old))
    try:
        assert table_row(run)["best_epoch"] == config["best_epoch"]
    finally:
        (run / "config.json").write_text(json.dumps(config))
