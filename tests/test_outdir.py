"""fungalzsl.outdir: an output folder is replaced whole or not at all, and never when it holds other files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fungalzsl.outdir as outdir
from fungalzsl.errors import FungalError
from fungalzsl.outdir import foreign_entries, staged_dir

OWNED = ("metrics.json", "report.md", "figures/", "figures/*.png")
SRC = Path(__file__).resolve().parents[1] / "src"


def _old(out: Path) -> dict[str, bytes]:
    (out / "figures").mkdir(parents=True)
    (out / "metrics.json").write_text('{"old": true}\n')
    (out / "report.md").write_text("# old\n")
    (out / "figures" / "a.png").write_bytes(b"png")
    return _tree(out)


def _tree(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_the_new_folder_replaces_the_old_one_whole(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(outdir, "_exchange", lambda a, b: False)
    out = tmp_path / "eval"
    _old(out)
    with staged_dir(out, OWNED, "an evaluation") as stage:
        assert stage.parent == tmp_path and stage.is_dir() and not any(stage.iterdir())
        (stage / "metrics.json").write_text('{"new": true}\n')
    assert _tree(out) == {"metrics.json": b'{"new": true}\n'}  # the old report and figures are gone
    assert _siblings(out) == []


def test_a_failure_inside_the_block_leaves_the_old_folder_intact(tmp_path):
    out = tmp_path / "eval"
    before = _old(out)
    with pytest.raises(RuntimeError), staged_dir(out, OWNED, "an evaluation") as stage:
        (stage / "metrics.json").write_text('{"new": true}\n')
        raise RuntimeError("killed after metrics.json")
    assert _tree(out) == before and _siblings(out) == []


def test_a_killed_process_leaves_the_old_folder_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / "eval"
    before = _old(out)
    code = (
        "import os, signal, sys; from pathlib import Path; from fungalzsl.outdir import staged_dir\n"
        f"with staged_dir(Path(sys.argv[1]), {OWNED!r}, 'an evaluation') as stage:\n"
        "    (stage / 'metrics.json').write_text('half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    res = subprocess.run([sys.executable, "-c", code, str(out)], env=env)
    assert res.returncode == -9
    assert _tree(out) == before
    assert len(_siblings(out)) == 1  # the dead process's staging folder, not mistaken for the output
    with staged_dir(out, OWNED, "an evaluation") as stage:
        assert _siblings(out) == [stage.name]  # the leftover was removed before starting
        (stage / "metrics.json").write_text("new")
    assert _tree(out) == {"metrics.json": b"new"} and _siblings(out) == []


def test_a_swap_interrupted_between_its_two_renames_is_undone(tmp_path):
    out = tmp_path / "eval"
    before = _old(out)
    parked = tmp_path / f".eval.previous-{_dead_pid()}-x"
    out.rename(parked)  # killed after parking the old folder, before the new one was moved in
    (tmp_path / f".eval.staging-{_dead_pid()}-x").mkdir()
    outdir.recover(out)
    assert _tree(out) == before and _siblings(out) == []


def test_a_running_process_keeps_its_staging_folder(tmp_path):
    out = tmp_path / "eval"
    mine = tmp_path / f".eval.staging-{os.getpid()}-x"
    mine.mkdir()
    outdir.recover(out)
    assert mine.is_dir()


def test_a_folder_with_other_files_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "eval"
    _old(out)
    (out / "notes.txt").write_text("mine")
    (out / "figures" / "drawing.svg").write_text("<svg/>")
    (out / "data").mkdir()
    before = _tree(out)
    with (
        pytest.raises(FungalError, match="not an evaluation's") as e,
        staged_dir(out, OWNED, "an evaluation"),
    ):
        pytest.fail("must refuse before the work starts")
    assert "data/" in str(e.value) and "notes.txt" in str(e.value)
    assert _tree(out) == before and _siblings(out) == []


def test_what_the_command_writes_and_its_torn_temp_files_are_owned(tmp_path):
    out = tmp_path / "eval"
    _old(out)
    (out / ".metrics.json.k2j_x9.tmp").write_text("torn")  # an atomic write killed mid-way
    assert foreign_entries(out, OWNED) == []
    (out / ".notes.abc.tmp").write_text("not ours")
    assert foreign_entries(out, OWNED) == [".notes.abc.tmp"]


def test_a_file_or_the_current_directory_is_not_a_target(tmp_path, monkeypatch):
    f = tmp_path / "x.jsonl"
    f.write_text("{}\n")
    with pytest.raises(FungalError, match="cannot write to"), staged_dir(f, OWNED, "an evaluation"):
        pass
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FungalError, match="current directory"), staged_dir(".", OWNED, "an evaluation"):
        pass
    assert f.read_text() == "{}\n"


def test_a_new_folder_gets_the_users_default_mode_and_a_replaced_one_keeps_its_own(tmp_path):
    out = tmp_path / "new"
    with staged_dir(out, OWNED, "an evaluation"):
        pass
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask
    out.chmod(0o750)
    with staged_dir(out, OWNED, "an evaluation"):
        pass
    assert out.stat().st_mode & 0o777 == 0o750
