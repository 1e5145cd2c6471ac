"""``resolve_run_dir``: the one rule for the folders a command that needs a run accepts, and the one-line
error that says what a wrong folder is."""

from __future__ import annotations

import pytest

from fungalzsl.errors import FungalError
from fungalzsl.rundir import resolve_run_dir


def _run(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_a_training_run_is_itself(tmp_path):
    run = _run(tmp_path / "r")
    assert resolve_run_dir(run) == run
    assert resolve_run_dir(str(run)) == run


def test_the_output_folder_of_fungalzsl_run_stands_for_its_run(tmp_path):
    out = tmp_path / "default"
    run = _run(out / "run")
    (out / "pipeline.json").write_text("{}")
    (out / "data").mkdir()
    assert resolve_run_dir(out) == run
    assert resolve_run_dir(run) == run


@pytest.mark.parametrize(
    ("make", "needles"),
    [
        (lambda p: None, ["does not exist", "expected a run from `fungalzsl train` or an output folder"]),
        (lambda p: p.write_text("x"), ["is a file, not a folder"]),
        (lambda p: p.mkdir(), ["has no config.json: expected a run from `fungalzsl train`"]),
        (
            lambda p: (p.mkdir(), (p / "classifier.json").write_text("{}"), (p / "image_encoder.onnx").write_text("")),
            ["is an ONNX export folder (classifier.json + image_encoder.onnx): serve needs a training run",
             "use `fungalzsl predict"],
        ),
        (
            lambda p: (p.mkdir(), (p / "pipeline.json").write_text("{}")),
            ["output folder of `fungalzsl run` whose training has not finished", "fungalzsl run --out"],
        ),
        (lambda p: (p.mkdir(), (p / "metrics.json").write_text("{}")), ["is an evaluation folder (metrics.json)"]),
        (lambda p: (p.mkdir(), (p / "dataset.json").write_text("{}")), ["is a dataset folder (dataset.json)"]),
    ],
)  # fmt: skip
def test_a_wrong_folder_is_named_in_one_line(tmp_path, make, needles):
    p = tmp_path / "x"
    make(p)
    with pytest.raises(FungalError) as e:
        resolve_run_dir(p, "serve")
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg
    for n in needles:
        assert n in msg
