"""Evaluating on a labelled real-image folder (data/real-dev's layout): the reader, and the per-source
table whose every number is known in advance with KeywordModel (tests/keyword_model.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fungalzsl.eval import evaluate_run
from keyword_model import GOOD, KeywordModel, write_descriptions
from tiny_data import write_labelled

PAINT = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200), "reddish": (200, 30, 150)}


def _im(colour: str) -> Image.Image:
    return Image.fromarray(np.full((16, 16, 3), PAINT[colour], dtype=np.uint8))


# (true label, source, painted colour): labA gets one blue wrong, labB one red wrong; a line without a
# source counts as source "labels" (fungalzsl.labelled).
ITEMS = [
    ("red", "labA", "red"), ("red", "labA", "red"), ("red", "labA", "red"),
    ("green", "labB", "green"), ("green", "labB", "green"),
    ("blue", "labA", "blue"), ("blue", "labA", "reddish"),
    ("blue", "labB", "blue"), ("red", "labB", "green"),
    ("green", None, "green"),
]  # fmt: skip


@pytest.fixture
def real_folder(tmp_path: Path) -> Path:
    return write_labelled(tmp_path / "real", [(y, s, _im(c)) for y, s, c in ITEMS])


def test_per_source_table_is_exact(real_folder: Path, tmp_path: Path) -> None:
    desc = write_descriptions(tmp_path / "good.jsonl", GOOD, "good")
    out = tmp_path / "eval"
    # the default --split test: a labelled folder without a test/ folder is read whole
    m = evaluate_run(KeywordModel(), real_folder, out, descriptions=[desc], n_boot=20)
    assert m["n"] == 10 and m["classes"] == ["red", "green", "blue"]
    assert m["recall@1"] == pytest.approx(8 / 10)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 3 / 3 + 2 / 3) / 3)
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 3, 0], [1, 0, 2]]
    ps = m["per_source"]
    assert list(ps) == ["labA", "labB", "labels"]
    assert ps["labA"] == {"n": 5, "accuracy": pytest.approx(0.8), "per_class": {
        "red": {"n": 3, "correct": 3, "recall": 1.0}, "blue": {"n": 2, "correct": 1, "recall": 0.5}}}  # fmt: skip
    assert ps["labB"]["n"] == 4 and ps["labB"]["accuracy"] == pytest.approx(0.75)
    assert ps["labB"]["per_class"]["red"] == {"n": 1, "correct": 0, "recall": 0.0}
    assert ps["labels"] == {
        "n": 1,
        "accuracy": 1.0,
        "per_class": {"green": {"n": 1, "correct": 1, "recall": 1.0}},
    }
    assert json.loads((out / "metrics.json").read_text())["per_source"] == ps
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("path,source,true,prediction") and rows[1].split(",")[1] == "labA"
    report = (out / "report.md").read_text()
    assert "| labA | 5 | 0.800 | 3/3 (1.00) | – | 1/2 (0.50) |" in report
    assert "| labB | 4 | 0.750 | 0/1 (0.00) | 2/2 (1.00) | 1/1 (1.00) |" in report


def test_class_folders_are_read_as_before_without_a_per_source_table(tmp_path: Path) -> None:
    for c in ("red", "blue"):
        (tmp_path / "lab" / c).mkdir(parents=True)
        _im(c).save(tmp_path / "lab" / c / "a.png")
    desc = write_descriptions(tmp_path / "good.jsonl", GOOD, "good")
    m = evaluate_run(KeywordModel(), tmp_path / "lab", tmp_path / "ev", split="none", descriptions=[desc],
                     n_boot=20, figures=False)  # fmt: skip
    assert m["recall@1"] == 1.0 and m["classes"] == ["blue", "red"] and "per_source" not in m
