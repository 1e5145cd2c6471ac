"""Hostile files and hostile clients (issue 12): every known failure is one line and exit code 2, no
traceback; non-UTF-8 file names survive every writer; FIFOs, absurd sizes and broken LLM servers are
refused or bounded. Each test reproduces one fault of the code before the fix."""

from __future__ import annotations

import errno
import json
import os
import pickle
import stat
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fungalzsl import errors
from fungalzsl.cli import app
from fungalzsl.errors import FungalError
from fungalzsl.io import append_jsonl, atomic_write_json, read_jsonl, write_jsonl

RUN = CliRunner()
REPO = Path(__file__).resolve().parents[1]
FF = os.fsdecode(b"\xff")  # the surrogate escape a non-UTF-8 byte in a file name arrives as


def _one_line_error(res) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = [ln for ln in res.output.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


@pytest.fixture
def random_bytes(tmp_path) -> Path:
    p = tmp_path / "r.yaml"
    p.write_bytes(bytes(range(128, 256)) * 20)  # never valid UTF-8
    return p


# ---- the top-level handler: known classes -> one line; bugs keep their traceback -----------------------


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/o/x"), ["No space left", "/o/x", "free"]),
        (OSError(errno.EROFS, "Read-only file system", "/ro"), ["Read-only", "/ro", "another"]),
        (PermissionError(errno.EACCES, "Permission denied", "/p"), ["Permission denied", "/p"]),
        (FileExistsError(errno.EEXIST, "File exists", "/f"), ["File exists", "/f"]),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/d"), ["Is a directory", "/d"]),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), ["not UTF-8"]),
        (json.JSONDecodeError("Expecting value", "x", 0), ["not valid JSON"]),
        (pickle.UnpicklingError("Weights only load failed"), ["refused", "pickle"]),
        (RuntimeError("Found no NVIDIA driver on your system."), ["CUDA", "--device cpu"]),
        (AssertionError("Torch not compiled with CUDA enabled"), ["CUDA", "--device cpu"]),
        (RuntimeError("Expected one of cpu, cuda, ... device type at start of device string: x"), ["device"]),
    ],
)
def test_known_error_classes_get_one_line_with_a_fix(exc, words):
    line = errors.explain(exc)
    assert line and "\n" not in line and all(w in line for w in words), line


def test_damaged_safetensors_is_known(tmp_path):
    from safetensors.torch import load_file

    bad = tmp_path / "x.safetensors"
    bad.write_bytes(os.urandom(300))
    with pytest.raises(Exception) as info:
        load_file(str(bad))
    assert "safetensors" in (errors.explain(info.value) or "")


def test_bugs_are_not_hidden():
    assert errors.explain(ValueError("a bug")) is None
    assert errors.explain(KeyError("k")) is None
    assert errors.explain(OSError(errno.ECONNRESET, "reset")) is None


def _app_with(fn):
    """A CLI built on the real top-level group with a command that runs ``fn``, to drive the handler."""
    from fungalzsl.cli import _Group

    t = typer.Typer(cls=_Group, pretty_exceptions_enable=False)
    t.command("boom")(fn)
    t.command("other")(lambda: None)  # two commands, so Typer keeps the group
    return t


def test_handler_turns_known_errors_into_one_line_and_keeps_bugs(monkeypatch):
    def full():
        raise OSError(errno.ENOSPC, "No space left on device", "/out/x.csv")

    cmd = _app_with(full)
    line = _one_line_error(RUN.invoke(cmd, ["boom"]))
    assert "/out/x.csv" in line
    monkeypatch.setenv("FUNGALZSL_DEBUG", "1")  # the switch shows the traceback of known errors too
    assert isinstance(RUN.invoke(cmd, ["boom"]).exception, OSError)
    monkeypatch.delenv("FUNGALZSL_DEBUG")
    res = RUN.invoke(_app_with(lambda: {}["bug"]), ["boom"])
    assert isinstance(res.exception, KeyError)  # an unknown exception is a bug: traceback kept


def test_non_utf8_config_is_one_line_naming_the_file(random_bytes):
    line = _one_line_error(RUN.invoke(app, ["describe", "--config", str(random_bytes), "--out", "x.jsonl"]))
    assert str(random_bytes) in line and "UTF-8" in line


def test_non_utf8_config_in_a_real_process_prints_no_traceback(random_bytes, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "FUNGALZSL_NO_REEXEC": "1"}
    p = subprocess.run(
        [sys.executable, "-m", "fungalzsl", "run", "--config", str(random_bytes), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("error:")


@pytest.mark.parametrize("line", ["[1, 2]", '"text"', "null", "3"])
def test_jsonl_lines_that_are_not_objects_are_refused(tmp_path, line):
    f = tmp_path / "d.jsonl"
    f.write_text(f'{{"class": "spore", "text": "a b c"}}\n{line}\n{line}\n')
    with pytest.raises(FungalError, match=r"d.jsonl:2 .*not an object"):
        read_jsonl(f)
    _one_line_error(RUN.invoke(app, ["describe", "stats", str(f)]))


def test_non_utf8_jsonl_names_the_file(tmp_path, random_bytes):
    f = tmp_path / "d.jsonl"
    f.write_bytes(random_bytes.read_bytes())
    assert str(f) in _one_line_error(RUN.invoke(app, ["describe", "stats", str(f)]))


def test_full_disk_while_describing_is_one_line(tmp_path, monkeypatch):
    import fungalzsl.io as io_mod

    def no_space(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_mod.os, "fsync", no_space)
    _one_line_error(RUN.invoke(app, ["describe", "-n", "2", "--out", str(tmp_path / "d.jsonl"), "-q"]))


def test_stats_out_to_a_directory_is_one_line(tmp_path):
    d = tmp_path / "d.jsonl"
    RUN.invoke(app, ["describe", "-n", "2", "--out", str(d), "-q"])
    (tmp_path / "dir").mkdir()
    _one_line_error(RUN.invoke(app, ["describe", "stats", str(d), "--out", str(tmp_path / "dir")]))


# ---- FIFOs and other non-regular files are refused before opening -------------------------------------


@pytest.fixture
def fifo(tmp_path) -> Path:
    p = tmp_path / "pipe.png"
    os.mkfifo(p)
    return p


@pytest.mark.timeout(60)
def test_fifo_inputs_are_skipped_not_opened(fifo, tmp_path):
    from fungalzsl.images import expand_inputs

    ok = tmp_path / "a.png"
    ok.write_bytes(b"x")
    paths, problems = expand_inputs([str(fifo), str(ok)])
    assert paths == [ok] and problems == [f"{fifo}: not a regular file"]


@pytest.mark.timeout(60)
def test_fifo_text_files_are_refused(fifo):
    from fungalzsl.config import load_yaml

    with pytest.raises(FungalError, match="not a regular file"):
        read_jsonl(fifo)
    with pytest.raises(FungalError, match="not a regular file"):
        load_yaml(fifo)


# ---- non-UTF-8 file names: written back exactly, never crash a writer ---------------------------------


def test_json_and_jsonl_writers_keep_non_utf8_names(tmp_path):
    name = f"/data/{FF}.png"
    recs = [{"path": name, "text": "é"}]
    write_jsonl(tmp_path / "a.jsonl", recs)
    append_jsonl(tmp_path / "b.jsonl", recs)
    atomic_write_json(tmp_path / "c.json", recs)
    for f in ("a.jsonl", "b.jsonl", "c.json"):
        raw = (tmp_path / f).read_bytes()
        raw.decode("utf-8")  # still valid UTF-8 ...
        assert b"\\udcff" in raw  # ... with the documented escape
    back = read_jsonl(tmp_path / "a.jsonl")[0]["path"]
    assert (
        back == name and os.fsencode(back) == b"/data/\xff.png" and read_jsonl(tmp_path / "b.jsonl") == recs
    )


def test_predict_csv_and_json_keep_non_utf8_names(tmp_path):
    from fungalzsl.predict.cli import write_results
    from fungalzsl.predict.result import Prediction

    p = os.fsdecode(bytes(tmp_path) + b"/\xff.png")
    res = [Prediction(path=p, prediction="spore", probabilities={"spore": 0.9, "hyphae": 0.1})]
    write_results(tmp_path / "r.csv", res, ["spore", "hyphae"])
    assert b"/\xff.png" in (tmp_path / "r.csv").read_bytes()  # the file's own bytes
    write_results(tmp_path / "r.json", res, ["spore", "hyphae"])
    got = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["results"][0]["path"]
    assert os.fsencode(got) == os.fsencode(p)


def test_describe_writes_to_a_non_utf8_file_name(tmp_path):
    out = os.fsencode(tmp_path) + b"/\xff.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "FUNGALZSL_NO_REEXEC": "1"}
    p = subprocess.run(
        [sys.executable, "-m", "fungalzsl", "describe", "-n", "2", "-q", "--out", out],
        capture_output=True, env=env, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0 and b"Traceback" not in p.stderr, p.stderr
    assert len(read_jsonl(os.fsdecode(out))) == 6


# ---- bounds ----------------------------------------------------------------------------------------------


def test_per_class_has_a_stated_upper_bound(tmp_path):
    line = _one_line_error(
        RUN.invoke(app, ["describe", "-n", "1000000000", "--out", str(tmp_path / "d.jsonl"), "-q"])
    )
    assert "100,000" in line or "100000" in line
    assert not (tmp_path / "d.jsonl").exists()
    from fungalzsl.text.generate import generate_descriptions

    with pytest.raises(FungalError, match="100,000"):
        generate_descriptions("bank", per_class=10**9, out=tmp_path / "e.jsonl")


def test_empty_class_folder_warns(tmp_path, capsys):
    from fungalzsl.images import list_split

    for c in ("spore", "hyphae"):
        (tmp_path / "train" / c).mkdir(parents=True)
    (tmp_path / "train" / "hyphae" / "a.png").write_bytes(b"x")
    s = list_split(tmp_path, "train", ["spore", "hyphae"])
    assert len(s) == 1
    err = capsys.readouterr().err
    assert "warning:" in err and "spore" in err and "no train examples" in err


def test_run_rejects_an_unknown_llm_before_generating(tmp_path):
    from conftest import write_tiny_config
    from fungalzsl.pipeline import run_pipeline

    cfg = write_tiny_config(tmp_path / "t.yaml")
    with pytest.raises(FungalError, match="unknown backend 'nosuch:x'"):
        run_pipeline(tmp_path / "out", cfg, llm="nosuch:x", log=lambda _m: None)
    assert not (tmp_path / "out" / "data").exists()


# ---- safetensors: normal permissions, same bytes, damaged files named ----------------------------------


def test_safetensors_get_umask_permissions_and_stable_bytes(tmp_path):
    import torch

    from fungalzsl.tensorfile import save_tensors

    t = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(4, dtype=torch.int64)}
    meta1 = {f"k{i}": str(i) for i in range(12)}
    meta2 = dict(reversed(list(meta1.items())))
    blobs = set()
    for k in range(6):
        save_tensors(tmp_path / f"m{k}.safetensors", t, metadata=meta1 if k % 2 else meta2)
        blobs.add((tmp_path / f"m{k}.safetensors").read_bytes())
    assert len(blobs) == 1
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "m0.safetensors").stat().st_mode) == 0o666 & ~mask
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m0.safetensors"), "pt") as f:
        assert f.metadata() == meta1 and torch.equal(f.get_tensor("b"), t["b"])


def test_damaged_safetensors_names_the_file(tmp_path):
    from fungalzsl.tensorfile import load_tensors

    bad = tmp_path / "class_embeddings.safetensors"
    bad.write_bytes(b"\x00" * 3)
    with pytest.raises(FungalError, match=r"class_embeddings\.safetensors is damaged"):
        load_tensors(bad, "class embeddings")


# ---- LLM servers that answer badly -----------------------------------------------------------------------


class _Server:
    """A chat-completions server whose answer is chosen by the path's first part."""

    def __init__(self) -> None:
        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                mode = self.path.strip("/").split("/")[0]
                content = {"null": None, "big": "word " * 2_000_000}.get(mode, "x")
                body = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": content}}]}).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if mode == "trickle":
                    try:
                        for i in range(len(body)):
                            self.wfile.write(body[i : i + 1])
                            self.wfile.flush()
                            time.sleep(0.2)
                    except OSError:
                        return
                else:
                    self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _describe(server, mode, out, *extra):
    args = ["describe", "--backend", "openai:m", "--base-url", f"{server.url}/{mode}/v1", "-n", "2",
            "--classes", "spore", "--max-retries", "1", "--retry-backoff", "0.01", "--timeout", "2",
            "--max-resample", "1", "--out", str(out), "-q", *extra]  # fmt: skip
    return RUN.invoke(app, args)


@pytest.mark.network_local
def test_content_null_is_a_failed_answer_and_a_failed_run(server, tmp_path):
    line = _one_line_error(_describe(server, "null", tmp_path / "d.jsonl"))
    assert "without any text" in line


@pytest.mark.network_local
@pytest.mark.timeout(120)
def test_a_10mb_answer_does_not_stall_describe(server, tmp_path):
    t = time.monotonic()
    res = _describe(server, "big", tmp_path / "d.jsonl")
    assert time.monotonic() - t < 30
    assert res.exit_code == 0 and "too_long" in res.output and "still missing spore" in res.output


@pytest.mark.network_local
@pytest.mark.timeout(120)
def test_a_trickling_server_hits_a_hard_deadline(server, tmp_path):
    t = time.monotonic()
    line = _one_line_error(_describe(server, "trickle", tmp_path / "d.jsonl", "--max-retries", "0"))
    assert "did not finish" in line and time.monotonic() - t < 60


def test_generate_into_a_non_utf8_directory_writes_metadata_and_resumes(tmp_path):
    out = os.fsencode(tmp_path) + b"/\xffdata"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "FUNGALZSL_NO_REEXEC": "1"}
    cmd = [sys.executable, "-m", "fungalzsl", "generate", "--out", out, "-n", "6", "--size", "32", "-j", "1"]
    for extra in ([], ["--resume"]):
        p = subprocess.run([*cmd, *extra], capture_output=True, env=env, timeout=300)
        assert p.returncode == 0 and b"Traceback" not in p.stderr, p.stderr[-2000:]
    for name in (b"metadata.parquet", b"metadata.jsonl", b"dataset.json"):
        assert os.path.getsize(out + b"/" + name) > 0
    assert not [n for n in os.listdir(out) if n.endswith(b".tmp")]


def test_import_refuses_a_mapping_to_non_texts(tmp_path):
    src = tmp_path / "caps.json"
    src.write_text('{"spore": ["a real text here", 1, null]}')
    line = _one_line_error(
        RUN.invoke(app, ["describe", "import", str(src), "--out", str(tmp_path / "d.jsonl")])
    )
    assert "list of texts" in line and not (tmp_path / "d.jsonl").exists()
