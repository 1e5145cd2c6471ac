"""``fungalzsl generate`` on the command line: happy path, help, and every bad input as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fungalzsl.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["generate", *args])


def assert_user_error(res, *needles: str) -> None:
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert err.startswith("error:"), err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in res.output
    for n in needles:
        assert n in err, err


def write_preset(tmp_path: Path, edit) -> Path:
    """The paper preset with one edit applied, as a user's own YAML file."""
    import yaml

    from fungalzsl.config import load_yaml

    data = load_yaml("paper")
    edit(data["generate"])
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"generate": data["generate"]}))
    return path


def test_help_names_the_promised_options():
    res = run("--help")
    assert res.exit_code == 0
    for opt in ("--out", "--num-images", "--size", "--seed", "--workers", "--preset", "--mode", "--palette",
                "--format", "--shard", "--resume", "--overwrite", "--renderer", "import-fungalzsl"):  # fmt: skip
        assert opt in res.output, opt


def test_generate_small_dataset(tmp_path):
    res = run("--out", str(tmp_path / "d"), "--num-images", "9", "--size", "32", "--workers", "1")
    assert res.exit_code == 0, res.output
    assert "wrote 9 images" in res.stdout
    assert json.loads((tmp_path / "d/dataset.json").read_text())["num_images"] == 9


def test_sequence_mode_webdataset_from_the_command_line(tmp_path):
    res = run("--out", str(tmp_path / "s"), "--mode", "sequence", "-n", "45", "--size", "32", "-j", "1",
              "--format", "webdataset", "--samples-per-shard", "25")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "wrote 40 images" in res.stdout and "whole sequences" in res.stderr
    man = json.loads((tmp_path / "s/dataset.json").read_text())
    assert man["mode"] == "sequence" and sum(man["shards"].values()) == 40


def test_custom_preset_with_other_classes(tmp_path):
    """A user's preset with a fourth class and other parameters works without code changes."""

    def edit(g):
        g["classes"].append({**g["classes"][1], "name": "sporangium", "depth": 2, "colours": ["#3050ff", "#a0b0ff"],
                             "time_s": [90, 100], "overlap": []})  # fmt: skip

    preset = write_preset(tmp_path, edit)
    res = run("--out", str(tmp_path / "d"), "--preset", str(preset), "-n", "8", "--size", "32", "-j", "1")
    assert res.exit_code == 0, res.output
    man = json.loads((tmp_path / "d/dataset.json").read_text())
    assert man["classes"] == ["spore", "hyphae", "mycelium", "sporangium"]
    assert len(list((tmp_path / "d/train/sporangium").glob("*.png"))) >= 1


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda g: g["classes"][1]["overlap"][0].update({"class": "yeast"}), "unknown class 'yeast'"),
        (lambda g: g["classes"][0].update({"n_structures": -3}), "n_structures"),
        (lambda g: g["classes"][2].update({"branch_length": -0.1}), "branch_length"),
        (lambda g: g["classes"][2].update({"depth": 500}), "depth"),
        (lambda g: g["classes"][0].update({"colours": ["yellow", "#ffffff"]}), "#rrggbb"),
        (lambda g: g["classes"][0].update({"temperature_K": [330, 300]}), "low <= high"),
        (lambda g: g.update({"splits": {"train": 0.9, "val": 0.3}}), "sum to 1"),
        (lambda g: g.update({"colour": "red"}), "colour"),
        (lambda g: g["branching"].update({"max_segments": 50}), "branch segments"),
    ],
    ids=[
        "unknown-class",
        "negative-count",
        "negative-length",
        "absurd-depth",
        "bad-colour",
        "reversed-range",
        "bad-splits",
        "unknown-key",
        "too-many-segments",
    ],
)
def test_bad_preset(tmp_path, edit, needle):
    preset = write_preset(tmp_path, edit)
    assert_user_error(
        run("--out", str(tmp_path / "d"), "--preset", str(preset), "-n", "3", "-j", "1"), needle
    )
    assert not (tmp_path / "d/dataset.json").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--num-images", "0"], "num_images"),
        (["--size", "100000"], "size"),
        (["--size", "-5"], "size"),
        (["--workers", "0"], "--workers"),
        (["--shard", "3/2"], "--shard"),
        (["--shard", "half"], "--shard"),
        (["--preset", "nonexistent"], "not found"),
        (["--resume", "--overwrite"], "contradict"),
        (["--mode", "sequence", "--num-images", "5"], "sequence"),
        (["--noise", "-1"], "noise"),
        (["--background", "blue"], "#rrggbb"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_bad_options(tmp_path, args, needle):
    assert_user_error(run("--out", str(tmp_path / "d"), "--size", "32", "-j", "1", *args), needle)


def test_missing_out():
    assert_user_error(run("--num-images", "3"), "--out")


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_user_error(run("--out", str(blocker / "sub"), "-n", "3", "-j", "1"), "cannot write")
    assert_user_error(run("--out", str(blocker), "-n", "3", "-j", "1"), "is a file")


def test_existing_output_needs_resume_or_overwrite(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "notes.txt").write_text("my data")
    args = ["--out", str(out), "-n", "3", "--size", "32", "-j", "1"]
    # A folder fungalzsl did not write is never touched, whatever the flags.
    assert_user_error(run(*args), "not empty", "no fungalzsl dataset")
    assert_user_error(run(*args, "--resume"), "no fungalzsl dataset")
    assert_user_error(run(*args, "--overwrite"), "no fungalzsl dataset")
    assert (out / "notes.txt").read_text() == "my data"

    (out / "notes.txt").unlink()
    assert run(*args).exit_code == 0
    (out / "notes.txt").write_text("my data")
    (out / "mine").mkdir()
    (out / "mine" / "sub").mkdir()  # a folder of folders that is not ours
    assert_user_error(run(*args), "already holds a dataset", "--resume", "--overwrite")
    (out / "train" / "spore" / "keep.txt").write_text("a file we did not write")
    assert_user_error(run(*args, "--overwrite"), "will not clear", "train")
    assert (out / "dataset.json").is_file()  # refused before anything was deleted
    (out / "train" / "spore" / "keep.txt").unlink()
    ok = run(*args, "--overwrite", "--seed", "7")
    assert ok.exit_code == 0, ok.output
    assert json.loads((out / "dataset.json").read_text())["seed"] == 7
    assert (out / "notes.txt").read_text() == "my data" and (out / "mine" / "sub").is_dir()


@pytest.mark.slow
def test_ctrl_c_is_one_line_and_resumable(tmp_path):
    """SIGINT to a running 2-worker 'fungalzsl generate': exit 130, a one-line hint, no tracebacks."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "d"
    cmd = [
        sys.executable,
        "-m",
        "fungalzsl",
        "generate",
        "--out",
        str(out),
        "-n",
        "1200",
        "--size",
        "32",
        "-j",
        "2",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while len(list(out.rglob("*.png"))) < 50 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    assert len([line for line in err.splitlines() if line.strip() and "generating" not in line]) == 1, err
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env={**os.environ})
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "dataset.json").read_text())["num_images"] == 1200
