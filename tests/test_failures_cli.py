"""Issue 12, the cases the first pass left open: output paths that are FIFOs, a bad ``--opset``, a damaged
ONNX export spec, ``run`` keeping its last evaluation, and the command-line cases of the checklist
(``--device cuda`` without a GPU, ``run --out FILE``). Each test fails on the code before its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fungalzsl.cli import app
from fungalzsl.errors import FungalError

RUN = CliRunner()
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "FUNGALZSL_NO_REEXEC": "1"}


def _one_line_error(res) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = [ln for ln in res.output.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


# ---- output files that are FIFOs or folders: refused before anything is opened --------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("extra", [[], ["--overwrite"]])
def test_describe_out_that_is_a_fifo_is_refused_not_opened(tmp_path, extra):
    fifo = tmp_path / "d.jsonl"
    os.mkfifo(fifo)
    line = _one_line_error(RUN.invoke(app, ["describe", "-n", "2", "-q", "--out", str(fifo), *extra]))
    assert str(fifo) in line and "not a regular file" in line
    assert fifo.is_fifo()  # --overwrite did not replace it either


@pytest.mark.timeout(60)
def test_appending_to_a_fifo_is_refused(tmp_path):
    from fungalzsl.io import append_jsonl

    os.mkfifo(tmp_path / "p.jsonl")
    with pytest.raises(FungalError, match="not a regular file"):
        append_jsonl(tmp_path / "p.jsonl", [{"a": 1}])


# ---- fungalzsl export --opset ------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", ["0", "99", "-3"])
def test_export_opset_outside_the_exporters_range_is_one_line(tmp_path, opset):
    line = _one_line_error(RUN.invoke(app, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "x"),
                                            "--opset", opset]))  # fmt: skip
    assert f"--opset {opset} is not supported" in line and "17" in line
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_export_at_an_opset_the_model_cannot_use_is_one_line(tiny_pipeline, tmp_path):
    cmd = [sys.executable, "-m", "fungalzsl", "export", str(tiny_pipeline / "run"), "--opset", "8"]
    p = subprocess.run(
        [*cmd, "--out", str(tmp_path / "x")], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.stdout == ""  # not torch's dump of the whole graph
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "--opset 8" in errors[0] and "newer --opset" in errors[0], p.stderr
    assert not (tmp_path / "x" / "image_encoder.onnx").exists()


# ---- predict EXPORT_DIR with a damaged classifier.json -------------------------------------------------------

GOOD_SPEC = {
    "format": "fungalzsl-onnx-v1",
    "classes": ["a", "b"],
    "class_embeddings": [[1.0, 0.0], [0.0, 1.0]],
    "logit_scale": 10.0,
    "preprocess": [{"op": "to_tensor"}],
}


def _export_dir(tmp_path: Path, spec: bytes) -> Path:
    d = tmp_path / "export"
    d.mkdir()
    (d / "classifier.json").write_bytes(spec)
    (d / "image_encoder.onnx").write_bytes(b"not read: the spec is checked first")
    return d


def _spec(**changes) -> bytes:
    spec = {**GOOD_SPEC, **changes}
    return json.dumps({k: v for k, v in spec.items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (_spec(classes=None), "'classes' is missing"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'{"classes": ["a",', "not valid JSON"),
        (bytes(range(128, 256)), "not UTF-8"),
        (_spec(classes="ab"), "not a list of class names"),
        (_spec(class_embeddings=[[1.0, 0.0]]), "one finite row per class"),
        (_spec(class_embeddings=[["x", 1], [0, 1]]), "not a table of numbers"),
        (_spec(logit_scale="hot"), "'logit_scale' is not a number"),
        (_spec(preprocess=[{"op": "rotate"}]), "unknown or incomplete"),
        (_spec(preprocess=[{"op": "resize", "size": 4, "interpolation": "magic"}]), "interpolation"),
    ],
)
def test_predict_with_a_damaged_export_spec_is_one_line_naming_the_file(tmp_path, spec, words):
    d = _export_dir(tmp_path, spec)
    (tmp_path / "x.png").write_bytes(b"x")
    line = _one_line_error(RUN.invoke(app, ["predict", str(d), str(tmp_path / "x.png")]))
    assert str(d / "classifier.json") in line and words in line and "fungalzsl export" in line, line


def test_a_good_spec_is_read_back_as_arrays(tmp_path):
    from fungalzsl.predict.onnx import read_spec

    d = _export_dir(tmp_path, _spec())
    spec = read_spec(d / "classifier.json")
    assert spec["classes"] == ["a", "b"] and spec["class_embeddings"].shape == (2, 2)


# ---- fungalzsl run keeps its last good evaluation ------------------------------------------------------------


@pytest.mark.slow
def test_run_whose_evaluate_fails_keeps_the_previous_eval_folder(tiny_pipeline, tmp_path, monkeypatch):
    import shutil

    import fungalzsl.eval.evaluate as evaluate
    from fungalzsl.pipeline import run_pipeline

    out = tmp_path / "out"
    shutil.copytree(tiny_pipeline, out)
    before = {p.name: p.read_bytes() for p in (out / "eval").iterdir() if p.is_file()}
    assert "metrics.json" in before and "report.html" in before
    real = evaluate.write_outputs

    def dies_half_way(stage, *args, **kwargs):
        (Path(stage) / "metrics.json").write_text("{}")  # a first new file, then the crash
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluate, "write_outputs", dies_half_way)
    cfg, changed = tiny_pipeline.parent / "tiny.yaml", {"evaluate": {"n_boot": 51}}  # evaluate reruns
    with pytest.raises(OSError, match="No space"):
        run_pipeline(out, cfg, overrides=changed, log=lambda _m: None)
    assert {p.name: p.read_bytes() for p in (out / "eval").iterdir() if p.is_file()} == before
    monkeypatch.setattr(evaluate, "write_outputs", real)
    metrics = run_pipeline(out, cfg, overrides=changed, log=lambda _m: None)
    assert json.loads((out / "eval" / "metrics.json").read_text()) == metrics


# ---- a full or read-only disk names the output that failed, not a temporary file or nothing -----------------


def test_a_write_error_names_the_output_file(tmp_path, monkeypatch):
    import errno

    import fungalzsl.io as io_mod
    from fungalzsl import errors

    def no_space(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")  # as write/fsync raise it: no file name

    monkeypatch.setattr(io_mod.os, "fsync", no_space)
    for write in (
        lambda p: io_mod.atomic_write_text(p, "x"),
        lambda p: io_mod.append_jsonl(p, [{"a": 1}]),
    ):
        with pytest.raises(OSError) as info:
            write(tmp_path / "r.csv")
        line = errors.explain(info.value)
        assert f"No space left on device: {tmp_path / 'r.csv'}." in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]  # the append's, no temporary left
    line = _one_line_error(RUN.invoke(app, ["describe", "-n", "2", "-q", "--out", str(tmp_path / "d.jsonl")]))
    assert str(tmp_path / "d.jsonl") in line


def test_a_read_only_folder_names_the_output_not_its_temporary_file(tmp_path, monkeypatch):
    import errno
    import tempfile

    import fungalzsl.io as io_mod

    def read_only(prefix, suffix, dir):
        raise OSError(errno.EROFS, "Read-only file system", f"{dir}/{prefix}k3j2.tmp")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OSError) as info, io_mod.atomic_path(tmp_path / "m.safetensors"):
        pass
    assert info.value.filename == str(tmp_path / "m.safetensors")
    other = OSError(errno.EROFS, "Read-only file system", "/elsewhere/file")
    monkeypatch.setattr(tempfile, "mkstemp", lambda **_k: (_ for _ in ()).throw(other))
    with pytest.raises(OSError) as info:
        io_mod.atomic_write_text(tmp_path / "x.txt", "x")
    assert info.value is other  # an error about another file keeps its own name


@pytest.mark.timeout(60)
def test_atomic_writers_refuse_to_replace_a_fifo(tmp_path):
    from fungalzsl.io import atomic_path, atomic_write_text

    fifo = tmp_path / "stats.json"
    os.mkfifo(fifo)
    with pytest.raises(FungalError, match="not a regular file"):
        atomic_write_text(fifo, "x")
    with pytest.raises(FungalError, match="not a regular file"), atomic_path(fifo):
        pass
    d = tmp_path / "d.jsonl"
    RUN.invoke(app, ["describe", "-n", "2", "-q", "--out", str(d)])
    _one_line_error(RUN.invoke(app, ["describe", "stats", str(d), "--out", str(fifo)]))
    fifo2 = tmp_path / "e.jsonl"
    os.mkfifo(fifo2)
    line = _one_line_error(
        RUN.invoke(app, ["describe", "import", str(d), "--out", str(fifo2), "--overwrite"])
    )
    assert (
        "not a regular file" in line
        and fifo.is_fifo()
        and fifo2.is_fifo()
        and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    )


def test_run_out_that_is_a_file_is_one_line_and_the_file_is_kept(tmp_path):
    from conftest import write_tiny_config

    f = tmp_path / "notes.txt"
    f.write_text("mine")
    cfg = write_tiny_config(tmp_path / "t.yaml")
    line = _one_line_error(RUN.invoke(app, ["run", "--out", str(f), "--config", str(cfg)]))
    assert "is a file, not a folder" in line and f.read_text() == "mine"
