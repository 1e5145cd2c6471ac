"""``fungalzsl run``: the whole pipeline on tiny settings, its stage cache and its restart after a kill."""

import json

import pytest
from typer.testing import CliRunner

from conftest import write_tiny_config
from fungalzsl.cli import app
from fungalzsl.pipeline import run_pipeline
from test_generate_golden import dataset_digests

pytestmark = pytest.mark.slow


def _logged(out, cfg, **kw):
    lines: list[str] = []
    metrics = run_pipeline(out, cfg, log=lines.append, **kw)
    return metrics, lines


def test_full_run_writes_every_stage_and_a_second_run_does_no_work(tiny_pipeline):
    out = tiny_pipeline
    assert (out / "data" / "dataset.json").is_file()
    assert (out / "descriptions" / "bank.jsonl").is_file()
    assert (out / "run" / "model.safetensors").is_file()
    assert (out / "run" / "class_embeddings.safetensors").is_file()
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert {"recall@1", "per_class", "confusion_matrix", "ece", "n"} <= set(metrics)
    assert metrics["n"] == 6  # 10% of 60 images
    assert (out / "eval" / "report.html").is_file()

    again, lines = _logged(out, out.parent / "tiny.yaml")
    assert all("up to date" in line for line in lines), lines
    assert len(lines) == 4
    assert again["recall@1"] == metrics["recall@1"]


# data/ of the tiny `fungalzsl run` (conftest.TINY_CONFIG), recorded with commit 23d505b; the manifest's
# version-dependent fields are left out, test_generate_golden checks them with the version pinned.
GOLDEN_RUN_DATA = {
    "images": "e4242524bd3c2771d6780193b1d151a3e732190be4e8efa41fadd913ae2800e9",
    "metadata": "6e8f1b32eb7ba5330e9976306c7ef5aae133babdfb0f2c09f9a6da2571922d33",
    "manifest": "de691712ee0b56223740396aadc31748a0056702cea046e0cda3ab52e4009f58",
}


def test_run_generates_the_same_bytes_as_before(tiny_pipeline):
    assert dataset_digests(tiny_pipeline / "data", ("generator", "settings_hash")) == GOLDEN_RUN_DATA


def test_killed_run_restarts_at_the_unfinished_stage_and_changes_rerun_only_later_stages(
    tmp_path, monkeypatch
):
    import fungalzsl.train.loop as loop

    cfg = write_tiny_config(tmp_path / "tiny.yaml", train={"epochs": 1})
    real_train = loop.train_run

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train_run", killed)
    with pytest.raises(KeyboardInterrupt):
        _logged(tmp_path / "out", cfg)
    state = json.loads((tmp_path / "out" / "pipeline.json").read_text())
    assert state["generate"]["done"] and state["describe"]["done"]
    assert state["train"]["done"] is False

    monkeypatch.setattr(loop, "train_run", real_train)
    _, lines = _logged(tmp_path / "out", cfg)
    assert [line.split("]")[1].split()[0] for line in lines if "]" in line and "done in" not in line] == [
        "up",
        "up",
        "resuming",
        "running",
    ]

    cfg = write_tiny_config(tmp_path / "tiny.yaml", train={"epochs": 1}, evaluate={"n_boot": 20})
    _, lines = _logged(tmp_path / "out", cfg)
    ran = [line.split("]")[0][1:] for line in lines if "running" in line]
    assert ran == ["evaluate"]


def test_bad_config_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("describe: {per_class: -3}\n")
    res = CliRunner().invoke(app, ["run", "--out", str(tmp_path / "o"), "--config", str(bad)])
    assert res.exit_code == 2
    assert "per_class" in res.stderr and "Traceback" not in res.stderr


def test_generate_stage_key_follows_the_image_algorithm(tmp_path, monkeypatch):
    """After an upgrade that changes the pixels, `fungalzsl run` regenerates instead of reusing or
    resuming a dataset made by the older code."""
    import fungalzsl.synth.plan as plan
    from fungalzsl.synth.settings import load_generate_settings

    section = {"preset": "paper", "num_images": 30, "size": 32}
    now = load_generate_settings(tmp_path / "c.yaml", section)[3]
    monkeypatch.setattr(plan, "IMAGE_ALGORITHM", plan.IMAGE_ALGORITHM - 1)
    before = load_generate_settings(tmp_path / "c.yaml", section)[3]
    assert now["algorithm"] == before["algorithm"] + 1
    assert {k: v for k, v in now.items() if k != "algorithm"} == {
        k: v for k, v in before.items() if k != "algorithm"
    }
