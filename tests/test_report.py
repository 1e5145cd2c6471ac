"""Reports and figures: numbers in report.md/.html equal metrics.json; figures have the expected panels."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from fungalzsl.eval import plots
from fungalzsl.eval.report import Block, render_markdown
from keyword_model import GOOD, KeywordModel, make_colour_dataset, write_descriptions


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from fungalzsl.eval import evaluate_run

    root = tmp_path_factory.mktemp("rep")
    data = make_colour_dataset(root / "data")
    good = write_descriptions(root / "good.jsonl", GOOD, "good")
    out = root / "eval"
    evaluate_run(KeywordModel(), data, out, descriptions=[good], n_boot=50)
    return out


def _md_table(md: str, first_header: str) -> list[list[str]]:
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {first_header} |"))
    rows = []
    for ln in lines[start + 2 :]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").split("|")])
    return rows


def test_report_numbers_equal_metrics_json(evaluated):
    m = json.loads((evaluated / "metrics.json").read_text())
    md = (evaluated / "report.md").read_text()
    summary = _md_table(md, "model")[0]
    lo, hi = m["ci95"]["recall@1"]
    assert summary[1] == f"{m['recall@1']:.3f} [{lo:.3f}, {hi:.3f}]"
    assert summary[5].startswith(f"{m['ece']:.3f}")
    assert summary[-1] == str(m["n"])
    per_class = {r[0]: r for r in _md_table(md, "class")}
    for c, pc in m["per_class"].items():
        assert per_class[c][1] == f"{pc['precision']:.3f}"
        assert per_class[c][4] == str(pc["support"])
    cm = _md_table(md, "true \\ predicted")
    assert [[int(v) for v in r[1:]] for r in cm] == m["confusion_matrix"]


def test_report_changes_when_metrics_change(evaluated, tmp_path):
    # The report is rendered from metrics.json: edit the file, re-render, and the number follows.
    from fungalzsl.eval.report import evaluation_blocks

    m = json.loads((evaluated / "metrics.json").read_text())
    m["recall@1"] = 0.123456
    md = render_markdown(evaluation_blocks(m, {}))
    assert "0.123 [" in md


def test_html_is_self_contained(evaluated):
    html = (evaluated / "report.html").read_text()
    srcs = re.findall(r"src='([^']*)'", html)
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    m = json.loads((evaluated / "metrics.json").read_text())
    assert f"{m['recall@1']:.3f}" in html


def test_figures_exist_with_expected_size(evaluated):
    for name in ("probabilities", "examples", "confusion", "reliability"):
        f = evaluated / "figures" / f"{name}.png"
        assert f.is_file() and f.stat().st_size > 1000
    with Image.open(evaluated / "figures" / "reliability.png") as im:
        assert im.size == (450, 520)


def test_figure4_one_panel_per_set(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 5)
    sets = [(f"set{i}", rng.dirichlet(np.ones(3), 15), labels) for i in range(3)]
    fig = plots.plot_probability_distributions(sets, ["spore", "hyphae", "mycelium"], tmp_path / "f4.png")
    assert fig.panels == 3
    with Image.open(fig.path) as im:
        assert im.size == fig.size_px == (680, 825)  # 2.6 in per panel + 0.45 in legend strip


def test_figure5_orders_errors_first_and_borders_by_correctness(tmp_path):
    data = make_colour_dataset(tmp_path / "d", n=3, wrong_blue=0)
    paths = sorted((data / "test").rglob("*.png"))
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])  # rglob order: blue, green, red folders
    probs = np.full((9, 3), 0.1)
    probs[np.arange(9), labels] = 0.8
    probs[4] = [0.05, 0.05, 0.9]  # a confident error
    probs[7] = [0.4, 0.3, 0.3]  # a hesitant error
    order = plots.example_order(labels, probs, 6)
    assert order[:2] == [4, 7]  # errors, most confident first
    fig = plots.plot_examples(
        paths, labels, probs, ["blue", "green", "red"], tmp_path / "f5.png", n=6, cols=3
    )
    assert fig.panels == 6
    with Image.open(fig.path) as im:
        a = np.asarray(im.convert("RGB"))
    assert im.size == (720, 540)
    reds = ((a[..., 0] > 180) & (a[..., 1] < 60) & (a[..., 2] < 60)).sum()
    greens = ((a[..., 1] > 120) & (a[..., 0] < 60) & (a[..., 2] < 100)).sum()
    assert reds > 500 and greens > 500  # both border colours are drawn


def test_training_curves_from_metrics_jsonl(tmp_path):
    recs = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_recall@1": 0.5 + e / 10} for e in range(4)]
    fig = plots.plot_training_curves(recs, tmp_path / "t.png")
    assert fig is not None and fig.panels == 2 and fig.path.is_file()
    assert plots.plot_training_curves([{"epoch": 0}], tmp_path / "none.png") is None
    # the trainer's mix of step and epoch records, with timings (left out: they measure the machine)
    mixed = [
        {"type": "step", "epoch": 0, "step": s, "loss": 1.0 / s, "lr": 1e-3, "s_per_it": 0.1} for s in (1, 2)
    ]
    mixed += [
        {"type": "epoch", "epoch": 0, "step": 2, "train_loss": 0.7, "val_recall@1": 0.9, "epoch_s": 3.0},
        {"type": "epoch", "epoch": 1, "step": 4, "train_loss": 0.5, "val_recall@1": 1.0, "epoch_s": 3.0},
    ]
    fig = plots.plot_training_curves(mixed, tmp_path / "m.png")
    assert fig is not None and fig.panels == 3  # loss family, lr, recall


def test_markdown_renderer():
    md = render_markdown([Block("h1", "T"), Block("table", header=["a", "b"], rows=[["1", "2"]])])
    assert md.splitlines()[:4] == ["# T", "", "| a | b |", "| --- | --- |"]
