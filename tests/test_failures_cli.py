"""Issue 12, the cases the first pass left open: output paths that are FIFOs, a bad ``--opset``, a damaged
ONNX export spec, ``run`` keeping its last evaluation, and the command-line cases of the checklist
(``--device cuda`` without a GPU, ``run --out FILE``). Each test fails on the code before its fix."""

from __future__ import annotations

import os
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
