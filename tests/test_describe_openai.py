"""The OpenAI-compatible backend against a real chat-completions server on 127.0.0.1 (http.server in a
thread): the real ``openai`` client code path, with injected 429/500/timeouts, a lost server and resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from fungalzsl.cli import app
from fungalzsl.errors import FungalError
from fungalzsl.io import read_jsonl
from fungalzsl.text.backends import BackendOptions
from fungalzsl.text.generate import generate_descriptions

pytestmark = pytest.mark.network_local

VOCAB = [
    *[
        "thin",
        "dense",
        "round",
        "orange",
        "red",
        "yellow",
        "branching",
        "filament",
        "wall",
        "cell",
        "tip",
        "network",
    ],
    *[
        "septum",
        "spore",
        "colony",
        "germinate",
        "absorb",
        "nutrient",
        "enzyme",
        "substrate",
        "radial",
        "hue",
        "micrometre",
        "layer",
    ],
]


class FakeLLM:
    """A chat-completions server. ``script`` is consumed one entry per request: 'ok', '429', '500',
    'slow' (sleeps past the client timeout), 'drop' (closes the connection), 'short' (a 3-word answer),
    '401'. When the script is empty every request is 'ok' unless ``down`` is set (then 'drop')."""

    def __init__(self) -> None:
        self.script: list[str] = []
        self.down = False
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.ok = 0
        self.delay = 0.0  # seconds before each answer
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    action = fake.script.pop(0) if fake.script else ("drop" if fake.down else "ok")
                    fake.requests.append(body)
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                    n = fake.ok
                    if action == "ok":
                        fake.ok += 1
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                with fake.lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                time.sleep(fake.delay)
                with fake.lock:
                    fake.in_flight -= 1
                if action == "slow":
                    time.sleep(1.0)
                    action = "ok"
                if action in ("429", "500", "401"):
                    err = {"error": {"message": f"injected {action}", "type": "x", "code": action}}
                    return self._send(int(action), err, {"Retry-After": "0"} if action == "429" else {})
                user = body["messages"][-1]["content"]
                rng = random.Random(n)
                words = " ".join(rng.choice(VOCAB) for _ in range(3 if action == "short" else 25))
                content = f"Sure! Here is a description:\n\n{user}\n\n**It shows** {words} (answer {n})."
                self._send(200, {
                    "id": f"c{n}", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })  # fmt: skip

            def _send(self, code: int, obj: dict, headers: dict | None = None) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    fake = FakeLLM()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def opts(llm: FakeLLM, **kw) -> BackendOptions:
    base = {"base_url": llm.url, "timeout": 5.0, "max_retries": 3, "backoff": 0.01, "concurrency": 3}
    return BackendOptions(**{**base, **kw})


def test_generates_cleans_and_records_provenance(llm, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test-secret")
    rep = generate_descriptions(
        "vllm:tiny-llm", per_class=5, out=tmp_path / "d.jsonl", batch_size=4, seed=11, min_words=5,
        options=opts(llm, api_key_env="MY_KEY"),
    )  # fmt: skip
    recs = read_jsonl(rep.out)
    assert len(recs) == 15 and rep.shortfall == {}
    assert {r["class"] for r in recs} == {"spore", "hyphae", "mycelium"}
    for r in recs:
        assert r["text"].startswith("It shows") and "Describe" not in r["text"] and "Sure" not in r["text"]
        assert r["backend"] == "vllm" and r["model"] == "tiny-llm" and r["temperature"] == 0.9
        assert r["sampling"]["temperature"] == 0.9 and "sk-test" not in json.dumps(r)
    body = llm.requests[0]
    assert body["model"] == "tiny-llm" and body["temperature"] == 0.9 and isinstance(body["seed"], int)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "Describe the fungal growth stage" in body["messages"][1]["content"]
    assert llm.headers[0]["authorization"] == "Bearer sk-test-secret"
    # Seeds differ per request (a repeated seed at temperature 0.9 would repeat the answer on real servers).
    assert len({b["seed"] for b in llm.requests}) == len(llm.requests)
    assert "sk-test-secret" not in rep.out.read_text()


def test_retries_429_500_and_timeouts_then_succeeds(llm, tmp_path):
    llm.script = ["429", "500", "slow", "429"]
    rep = generate_descriptions(
        "openai:m", classes=["spore"], per_class=4, out=tmp_path / "d.jsonl", batch_size=4, min_words=5,
        options=opts(llm, timeout=0.4, concurrency=1, max_retries=5),
    )  # fmt: skip
    assert rep.added == {"spore": 4}
    # 4 answers + 2 rate limits/server errors + the slow one (answered after the client gave up) + 1 more 429.
    assert len(llm.requests) == 8


def test_too_short_answers_are_resampled(llm, tmp_path):
    llm.script = ["short", "short", "ok", "short"]
    rep = generate_descriptions(
        "ollama:m", classes=["hyphae"], per_class=3, out=tmp_path / "d.jsonl", batch_size=1, min_words=10,
        options=opts(llm),
    )  # fmt: skip
    assert rep.added == {"hyphae": 3} and rep.rejected["hyphae"]["too_short"] == 3
    assert all(len(r["text"].split()) >= 10 for r in read_jsonl(rep.out))


def test_lost_server_keeps_finished_work_and_resume_completes_without_duplicates(llm, tmp_path):
    out = tmp_path / "d.jsonl"
    llm.script = ["ok"] * 7
    llm.down = True  # after 7 answers the server stops answering
    with pytest.raises(FungalError, match="cannot reach") as e:
        generate_descriptions(
            "vllm:m",
            per_class=5,
            out=out,
            batch_size=2,
            min_words=5,
            options=opts(llm, max_retries=2, concurrency=1),
        )
    assert "rerun" in str(e.value)
    before = read_jsonl(out)
    assert len(before) == 7  # every answer that arrived was saved
    llm.down = False  # the server is back
    rep = generate_descriptions("vllm:m", per_class=5, out=out, batch_size=2, min_words=5, options=opts(llm))
    after = read_jsonl(out)
    assert rep.existing == {"spore": 5, "hyphae": 2, "mycelium": 0}
    assert len(after) == 15 and after[:7] == before
    assert len({r["text"] for r in after}) == 15
    assert {c: sum(r["class"] == c for r in after) for c in ("spore", "hyphae", "mycelium")} == {
        "spore": 5, "hyphae": 5, "mycelium": 5,
    }  # fmt: skip


def test_missing_key_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(FungalError, match="OPENAI_API_KEY"):
        generate_descriptions("openai:gpt-4o", per_class=1, out=tmp_path / "d.jsonl")
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    res = CliRunner().invoke(
        app, ["describe", "--backend", "gemini:gemini-2.0-flash", "--out", str(tmp_path / "g.jsonl")]
    )
    assert res.exit_code == 2 and "GEMINI_API_KEY" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "g.jsonl").exists()


def test_rejected_key_and_unreachable_server_are_one_line(llm, tmp_path):
    llm.script = ["401"]
    with pytest.raises(FungalError, match="rejected the API key"):
        generate_descriptions("ollama:m", per_class=1, out=tmp_path / "a.jsonl", options=opts(llm))
    port = llm.server.server_address[1]
    llm.server.shutdown()
    llm.server.server_close()
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, [
        "describe", "--backend", "ollama:m", "--base-url", f"http://127.0.0.1:{port}/v1", "--out",
        str(tmp_path / "b.jsonl"), "--retry-backoff", "0.5", "--per-class", "1",
    ])  # fmt: skip
    # Never reached: one quick retry, not five backed-off ones (0.5+1+2+4+8 s).
    assert time.perf_counter() - t0 < 5
    assert res.exit_code == 2 and "cannot reach" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_cli_against_the_server(llm, tmp_path):
    out = tmp_path / "cli.jsonl"
    res = CliRunner().invoke(app, [
        "describe", "--backend", "llama-server:m", "--base-url", llm.url, "--per-class", "2", "--out", str(out),
        "--min-words", "5", "--top-p", "0.9", "--top-k", "50", "--temperature", "0.75", "--mask-class-name",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    body = llm.requests[0]
    assert body["top_p"] == 0.9 and body["top_k"] == 50 and body["temperature"] == 0.75
    assert len(read_jsonl(out)) == 6


@pytest.mark.slow
def test_killed_process_resumes_without_loss_or_duplicates(llm, tmp_path):
    """SIGKILL the real CLI mid-run (no clean-up code runs), then resume."""
    llm.delay = 0.05
    out = tmp_path / "k.jsonl"
    cmd = [sys.executable, "-m", "fungalzsl", "describe", "--backend", "vllm:m", "--base-url", llm.url,
           "--per-class", "10", "--batch-size", "2", "--concurrency", "1", "--min-words", "5", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 6):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_jsonl(out)
    assert 6 <= len(before) < 30, "the kill should land mid-run"
    llm.delay = 0.0
    res = CliRunner().invoke(app, cmd[3:])
    assert res.exit_code == 0, res.output
    after = read_jsonl(out)
    assert len(after) == 30 and after[: len(before)] == before
    assert len({r["text"] for r in after}) == 30


def test_requests_run_concurrently(llm, tmp_path):
    llm.delay = 0.3
    t0 = time.perf_counter()
    rep = generate_descriptions(
        "vllm:m", classes=["spore"], per_class=6, out=tmp_path / "c.jsonl", batch_size=6, min_words=5,
        options=opts(llm, concurrency=3),
    )  # fmt: skip
    assert rep.added == {"spore": 6}
    assert llm.max_in_flight == 3
    assert time.perf_counter() - t0 < 6 * 0.3  # faster than one at a time
