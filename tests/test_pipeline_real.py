"""``fungalzsl run`` also scores a labelled real-image folder (``evaluate.real``): found from the
repository whatever the working directory, its own cached stage, side by side with the synthetic test
in OUT/report.md, and skipped with a note when absent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import REPO, write_tiny_config
from fungalzsl.config import load_section
from fungalzsl.pipeline import run_pipeline
from fungalzsl.pipeline.real import find_real_set
from tiny_data import make_labelled


def test_real_set_is_found_from_the_repository_of_the_config(tmp_path: Path, monkeypatch) -> None:
    repo = tmp_path / "clone"
    (repo / "data" / "real-dev").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("")
    (repo / "configs").mkdir()
    cfg = repo / "configs" / "x.yaml"
    cfg.write_text("")
    monkeypatch.chdir(tmp_path)
    assert find_real_set("data/real-dev", cfg) == repo / "data" / "real-dev"
    assert find_real_set("data/elsewhere", cfg) is None
    (tmp_path / "data" / "up").mkdir(parents=True)  # above the repository: not searched
    monkeypatch.chdir(repo / "configs")
    assert find_real_set("data/up", cfg) is None
    assert find_real_set(tmp_path / "data" / "up", cfg) == tmp_path / "data" / "up"


def test_default_config_names_the_committed_real_set(tmp_path: Path, monkeypatch) -> None:
    from fungalzsl.config import resolve_config_path

    real = load_section("cpu-default", "evaluate")["real"]
    monkeypatch.chdir(tmp_path)  # not the repository: found beside the shipped config
    assert find_real_set(real, resolve_config_path("cpu-default")) == REPO / "data" / "real-dev"
    assert load_section("paper", "evaluate").get("real") is None


@pytest.mark.slow
def test_run_scores_the_real_set_beside_the_synthetic_test(tiny_pipeline: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(tiny_pipeline, out)
    real = make_labelled(tmp_path / "real", {"labA": {"spore": 2, "hyphae": 1}, "labB": {"mycelium": 2}})
    lines: list[str] = []
    cfg = write_tiny_config(tmp_path / "real.yaml", evaluate={"real": str(real)})
    metrics = run_pipeline(out, cfg, log=lines.append)
    assert [ln.split("]")[0][1:] for ln in lines if "running" in ln] == ["evaluate-real"]
    assert metrics["real"]["n"] == 5 and list(metrics["real"]["per_source"]) == ["labA", "labB"]
    report = (out / "report.md").read_text()
    assert "Synthetic test (the paper's)" in report and "Real images" in report
    assert "| labB | 2 |" in report and (out / "eval-real" / "report.html").is_file()

    # an image added to the real set reruns its evaluation only
    make_labelled(tmp_path / "real", {"labA": {"spore": 3, "hyphae": 1}, "labB": {"mycelium": 2}})
    lines.clear()
    metrics = run_pipeline(out, cfg, log=lines.append)
    assert [ln.split("]")[0][1:] for ln in lines if "running" in ln] == ["evaluate-real"]
    assert metrics["real"]["n"] == 6

    lines.clear()
    missing = write_tiny_config(tmp_path / "missing.yaml", evaluate={"real": "no/such/folder"})
    metrics = run_pipeline(out, missing, log=lines.append)
    assert any("no/such/folder not found" in ln and "skipped" in ln for ln in lines)
    assert "real" not in metrics and not (out / "eval-real").exists()
    assert "Real images" not in (out / "report.md").read_text()
