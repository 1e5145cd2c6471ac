"""The output folder of ``fungalzsl run`` (OUT with OUT/run/) is accepted wherever a run is expected —
predict, serve, export, evaluate, table and ``Classifier.load`` — and a wrong folder gets one line that
says what it is. Also: the ONNX prediction path never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from fungalzsl import Classifier
from fungalzsl.cli import app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def out(tiny_pipeline):
    return tiny_pipeline  # OUT: data/, descriptions/, run/, eval/, pipeline.json


@pytest.fixture(scope="module")
def images(out):
    return sorted((out / "data" / "test").rglob("*.png"))


@pytest.fixture(scope="module")
def export_dir(out, tmp_path_factory):
    d = tmp_path_factory.mktemp("export") / "onnx"
    res = CliRunner().invoke(app, ["export", str(out), "--out", str(d)])
    assert res.exit_code == 0, res.output
    return d


def _one_error_line(res) -> str:
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in res.output, res.output
    return lines[0]


def test_classifier_load_and_predict_take_the_run_folder(out, images, tmp_path):
    clf = Classifier.load(out)
    assert clf.run_dir == out / "run" and clf.classes == ["spore", "hyphae", "mycelium"]
    csv_path = tmp_path / "r.csv"
    res = CliRunner().invoke(app, ["predict", str(out), str(images[0]), "-o", str(csv_path)])
    assert res.exit_code == 0, res.output
    row = csv_path.read_text().splitlines()[1]
    assert row.split(",")[1] == clf.predict(images[0])[0].prediction


def test_predict_says_how_many_rows_it_did_not_show(out, images, tmp_path):
    folder = images[0].parent.parent  # data/test: every test image
    res = CliRunner().invoke(app, ["predict", str(out), str(folder), "--show", "2"])
    assert res.exit_code == 0, res.output
    assert f"… {len(images) - 2} more not shown; use --output FILE.csv for all" in res.output
    res = CliRunner().invoke(
        app, ["predict", str(out), str(folder), "--show", "2", "-o", str(tmp_path / "a.csv")]
    )
    assert f"… {len(images) - 2} more not shown; all {len(images)} are in {tmp_path / 'a.csv'}" in res.output
    res = CliRunner().invoke(app, ["predict", str(out), str(folder)])  # 6 test images < 50: nothing hidden
    assert "more not shown" not in res.output


def test_export_takes_the_run_folder_and_serve_names_an_export_folder(out, export_dir):
    spec = json.loads((export_dir / "classifier.json").read_text())
    assert spec["source_run"] == str(out / "run")
    line = _one_error_line(CliRunner().invoke(app, ["serve", str(export_dir), "--port", "1"]))
    assert f"{export_dir} is an ONNX export folder (classifier.json + image_encoder.onnx)" in line
    assert f"serve needs a training run; use `fungalzsl predict {export_dir}" in line


def test_serve_takes_the_run_folder(out, monkeypatch):
    import socket

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    served = {}
    monkeypatch.setattr(
        uvicorn, "run", lambda app_, host, port, log_level: served.update(app=app_, port=port)
    )
    res = CliRunner().invoke(app, ["serve", str(out), "--port", str(port)])
    assert res.exit_code == 0, res.output
    assert f"serving {out / 'run'}" in res.output and served["port"] == port


def test_evaluate_and_table_take_the_run_folder(out, tmp_path):
    ev = tmp_path / "ev"
    args = ["evaluate", str(out), "--data", str(out / "data"), "--out", str(ev), "--no-baseline"]
    res = CliRunner().invoke(app, [*args, "--bootstrap", "10"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["model"]["run_dir"] == str(out / "run")
    res = CliRunner().invoke(app, ["table", str(out)])
    assert res.exit_code == 0, res.output
    assert f"{metrics['recall@1']:.3f}" in res.output


@pytest.mark.parametrize("command", ["predict", "serve", "export", "evaluate", "table"])
def test_a_wrong_folder_is_named_by_every_command(command, out, tmp_path):
    extra = {
        "predict": [str(tmp_path)],
        "serve": ["--port", "1"],
        "export": ["--out", str(tmp_path / "o")],
        "evaluate": ["--data", str(out / "data"), "--out", str(tmp_path / "o")],
        "table": [],
    }[command]
    line = _one_error_line(CliRunner().invoke(app, [command, str(out / "data"), *extra]))
    assert f"{out / 'data'} is a dataset folder (dataset.json): {command} needs a training run" in line
    (tmp_path / "empty").mkdir()
    line = _one_error_line(CliRunner().invoke(app, [command, str(tmp_path / "empty"), *extra]))
    assert (
        "has no config.json: expected a run from `fungalzsl train` or an output folder of `fungalzsl run`"
        in line
    )


def test_predict_from_an_onnx_export_never_imports_torch(export_dir, images, tmp_path):
    code = (
        "import sys\n"
        "from fungalzsl.cli import app\n"
        "try:\n"
        f"    app(['predict', {str(export_dir)!r}, {str(images[0])!r}, '-o', {str(tmp_path / 'r.csv')!r}])\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("NO-TORCH"), p.stdout
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 2


def test_every_runs_default_path_in_the_readme_tour_is_one_fungalzsl_run_leaves(out):
    """The README tour starts from what the first command left: each ``runs/default/...`` path it reads
    exists in a ``fungalzsl run`` output folder (outputs the tour's own commands create are listed)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    tour = readme[readme.index("## A tour of the commands") : readme.index("## Results on this machine")]
    created_by_the_tour = {"eval-again"}
    paths = set(re.findall(r"runs/default(?:/[\w.-]+)*", tour))
    assert "runs/default/run" in paths and "runs/default/descriptions/bank.jsonl" in paths
    for p in sorted(paths):
        rel = p.removeprefix("runs/default").strip("/")
        if rel.split("/")[0] not in created_by_the_tour:
            assert (out / rel).exists(), f"README tour names {p}, which `fungalzsl run` does not leave"
