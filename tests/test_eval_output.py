"""`fungalzsl evaluate` / `compare` output safety: --out is replaced whole or not at all, a folder of
other files is refused, and the run's evaluations.jsonl is written best-effort."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import fungalzsl.eval.evaluate as evaluate_mod
import test_eval_cli
from fungalzsl.cli import app
from keyword_model import GOOD, make_colour_dataset, write_descriptions

# The toy model registry and run directory of test_eval_cli (KeywordModel; no weights).
toy_registry, toy_run, _invoke = test_eval_cli.toy_registry, test_eval_cli.toy_run, test_eval_cli._invoke


def _tree(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _evaluate(run: Path, data: Path, out: Path, *extra: str):
    return _invoke("evaluate", str(run), "--data", str(data), "--out", str(out), "--bootstrap", "20", *extra)


def test_an_evaluation_killed_after_metrics_json_leaves_the_previous_one_complete(
    toy_run, tmp_path, monkeypatch
):
    data = make_colour_dataset(tmp_path / "data")
    out = tmp_path / "eval"
    assert _evaluate(toy_run, data, out).exit_code == 0
    before = _tree(out)
    assert {"metrics.json", "predictions.csv", "report.md", "report.html"} <= set(before)
    written = []

    def die(path, split, probs, *_):  # *_: the sources of a labelled folder
        written.append(sorted(p.name for p in path.parent.iterdir()))
        raise RuntimeError("crashed after metrics.json was written")

    monkeypatch.setattr(evaluate_mod, "write_predictions", die)
    with pytest.raises(RuntimeError, match="crashed"):
        _evaluate(toy_run, data, out, "--no-baseline")
    assert written == [["metrics.json"]]  # it did get that far, in its staging folder
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "eval", "run", "train-set.jsonl"]


def test_a_second_evaluation_replaces_the_first_with_no_stale_files(toy_run, tmp_path):
    data = make_colour_dataset(tmp_path / "data")
    out = tmp_path / "eval"
    assert _evaluate(toy_run, data, out).exit_code == 0
    assert (out / "figures" / "training.png").is_file()
    (out / "figures" / "stale.png").write_bytes(b"from an older version")
    good = write_descriptions(tmp_path / "g.jsonl", GOOD, "g")
    res = _invoke("evaluate", "toy", "--data", str(data), "--out", str(out), "--descriptions", str(good))
    assert res.exit_code == 0, res.output
    assert not (out / "figures" / "stale.png").exists()
    assert not (out / "figures" / "training.png").exists()  # a model spec has no training curves
    assert json.loads((out / "metrics.json").read_text())["model"]["run_dir"] is None


def test_evaluate_refuses_an_out_folder_holding_other_files(toy_run, tmp_path):
    data = make_colour_dataset(tmp_path / "data")
    res = CliRunner().invoke(app, ["evaluate", str(toy_run), "--data", str(data), "--out", str(toy_run)])
    assert res.exit_code == 2 and res.output.startswith("error:") and "not an evaluation's" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert (toy_run / "config.json").is_file() and not (toy_run / "metrics.json").exists()


def test_compare_is_staged_and_refuses_other_files_too(toy_registry, tmp_path):
    data = make_colour_dataset(tmp_path / "data")
    a = write_descriptions(tmp_path / "a.jsonl", GOOD, "a")
    b = write_descriptions(tmp_path / "b.jsonl", GOOD, "b")
    out = tmp_path / "cmp"
    args = ["compare", "toy", "--data", str(data), "--descriptions", str(a), str(b), "--out", str(out),
            "--bootstrap", "20"]  # fmt: skip
    assert _invoke(*args).exit_code == 0
    assert {"comparison.json", "comparison.csv", "comparison.md", "report.html"} <= set(_tree(out))
    assert _invoke(*args).exit_code == 0  # its own previous output is replaced
    (out / "keep.txt").write_text("mine")
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "not a comparison's (keep.txt)" in res.output
    assert (out / "keep.txt").read_text() == "mine"


def test_an_unwritable_evaluations_index_costs_a_warning_not_the_evaluation(toy_run, tmp_path):
    data = make_colour_dataset(tmp_path / "data")
    # A directory where the index should be fails for root too (unlike chmod a-w).
    (toy_run / "evaluations.jsonl").mkdir()
    out = tmp_path / "eval"
    res = CliRunner().invoke(app, ["evaluate", str(toy_run), "--data", str(data), "--out", str(out),
                                   "--bootstrap", "20"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "warning: could not record this evaluation in" in res.output
    assert "Recall@1 1.0000" in res.output
    assert json.loads((out / "metrics.json").read_text())["recall@1"] == pytest.approx(1.0)
    assert (out / "report.html").is_file()
