"""The web server against hostile or heavy clients, with a fake model (fast; the real page and a
loopback load test are in test_serve.py): body limits enforced while streaming, uploads never on
disk, the model off the event loop behind a bounded queue, memory handed back after each request."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import threading
import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from fungalzsl import Classifier
from fungalzsl.serve.app import create_app

BOUNDARY = "fungalzsltestboundary"
MB = 1024 * 1024


class GatedModel(torch.nn.Module):
    """Scores every image the same; ``encode_image`` waits for ``gate`` (a slow model on demand)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.gate, self.entered = threading.Event(), threading.Event()
        self.gate.set()

    @staticmethod
    def preprocess(im: Image.Image) -> torch.Tensor:
        return torch.zeros(3, 4, 4)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        assert self.gate.wait(30), "test never opened the gate"
        return torch.ones(x.shape[0], 2)


@pytest.fixture
def model():
    return GatedModel()


def _app_clf(model=None) -> Classifier:
    return Classifier(model or GatedModel(), ["a", "b"], torch.eye(2), 10.0)


def _app(model, **kw):
    return create_app(_app_clf(model), **kw)


def _png(side=8):
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


def _part_head(name="x.png"):
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()


def _streamed(parts, chunk):
    """A multipart body: ``parts`` file sizes in bytes, cut into ``chunk``-byte pieces."""
    for i, size in enumerate(parts):
        yield _part_head(f"f{i}.png")
        for _ in range(size // chunk):
            yield b"\0" * chunk
        yield b"\r\n"
    yield f"--{BOUNDARY}--\r\n".encode()


def _asgi_post(app, chunks, headers):
    """POST a body to the ASGI app one chunk per ``receive()``, as a server streams it (TestClient
    reads the whole body first): returns (status, JSON body, bytes the app pulled)."""
    import json

    import anyio

    pulled, sent = [0], []
    chunks = iter(chunks)

    async def receive():
        piece = next(chunks, None)
        if piece is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled[0] += len(piece)
        return {"type": "http.request", "body": piece, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/api/predict", "raw_path": b"/api/predict", "query_string": b"", "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    anyio.run(app, scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), pulled[0]


HEADERS = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def test_a_request_over_the_limit_is_refused_while_streaming(model):
    app = _app(model, max_upload_mb=1, max_file_mb=0.5)
    status, body, pulled = _asgi_post(app, _streamed([50 * MB], 256 * 1024), HEADERS)
    assert status == 413 and "at most 1 MB per request" in body["detail"]
    assert pulled < 2 * MB  # stopped right after the limit, not after 50 MB
    # a Content-Length over the limit is refused before any of the body is read
    big = {**HEADERS, "content-length": str(50 * MB)}
    status, body, pulled = _asgi_post(app, _streamed([50 * MB], 256 * 1024), big)
    assert status == 413 and pulled == 0


def test_too_many_files_are_refused_at_the_first_file_too_many(model):
    app = _app(model, max_files=2, max_upload_mb=64)
    status, body, pulled = _asgi_post(app, _streamed([MB] * 10, 64 * 1024), HEADERS)
    assert status == 413 and "too many files" in body["detail"]
    assert pulled < 3 * MB  # two files and a header, not ten files


def test_a_file_over_its_own_limit_is_a_per_file_error_and_is_not_kept(model):
    client = TestClient(_app(model, max_file_mb=0.5, max_upload_mb=8))
    files = [
        ("files", ("big.png", b"\0" * (2 * MB), "image/png")),
        ("files", ("ok.png", _png(), "image/png")),
    ]
    body = client.post("/api/predict", files=files).json()
    big, ok = body["results"]
    assert big["error"] == "big.png: larger than 0.5 MB (refused)" and ok["prediction"] in ("a", "b")


def test_uploads_never_touch_the_disk(model, monkeypatch):
    made = []
    for fn in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        real = getattr(tempfile, fn)
        monkeypatch.setattr(
            tempfile, fn, lambda *a, _real=real, _fn=fn, **k: made.append(_fn) or _real(*a, **k)
        )
    rng = np.random.default_rng(0)
    buf = io.BytesIO()  # ~3 MB of incompressible pixels: Starlette spooled anything over 1 MB to /tmp
    Image.fromarray(rng.integers(0, 255, (1000, 1000, 3), dtype=np.uint8)).save(buf, "PNG")
    assert buf.tell() > 2 * MB
    client = TestClient(_app(model, max_file_mb=8))
    r = client.post("/api/predict", files=[("files", ("noise.png", buf.getvalue(), "image/png"))] * 2)
    assert r.status_code == 200 and all(x["error"] is None for x in r.json()["results"])
    assert made == []


def test_malformed_bodies_get_4xx_not_500(model):
    client = TestClient(_app(model))
    assert (
        client.post("/api/predict", content=b"x", headers={"content-type": "text/plain"}).status_code == 422
    )
    assert client.post("/api/predict", files={"other": ("a.png", _png())}).status_code == 422
    torn = _part_head() + b"\0" * 100  # no closing boundary
    assert client.post("/api/predict", content=torn, headers=HEADERS).status_code == 400


def _post_in_thread(client, box):
    def go():
        box.append(client.post("/api/predict", files=[("files", ("x.png", _png(), "image/png"))]))

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_info_answers_while_a_prediction_runs(model):
    model.gate.clear()
    with TestClient(_app(model)) as client:  # one event loop for every request, as under uvicorn
        box: list = []
        t = _post_in_thread(client, box)
        assert model.entered.wait(10)  # the prediction is inside the model now, and stays there
        t0 = time.perf_counter()
        info = client.get("/api/info")
        waited = time.perf_counter() - t0
        assert info.status_code == 200 and waited < 2.0, f"/api/info waited {waited:.1f} s"
        assert client.get("/").status_code == 200
        model.gate.set()
        t.join(10)
        assert box[0].status_code == 200


def test_a_full_queue_answers_503_with_retry_after_then_recovers(model):
    model.gate.clear()
    with TestClient(_app(model, max_queue=1)) as client:
        box: list = []
        t = _post_in_thread(client, box)
        assert model.entered.wait(10)
        busy = client.post("/api/predict", files=[("files", ("y.png", _png(), "image/png"))])
        assert busy.status_code == 503 and "busy" in busy.json()["detail"]
        assert int(busy.headers["retry-after"]) >= 1
        model.gate.set()
        t.join(10)
        assert box[0].status_code == 200
        again = client.post("/api/predict", files=[("files", ("y.png", _png(), "image/png"))])
        assert again.status_code == 200


def test_memory_is_handed_back_after_prediction_requests(model, monkeypatch):
    import fungalzsl.serve.app as app_module

    calls = []

    class CountingTrimmer:
        def __call__(self):
            calls.append(threading.current_thread().name)
            return True

    monkeypatch.setattr(app_module, "HeapTrimmer", CountingTrimmer)
    client = TestClient(_app(model))
    assert client.post("/api/predict", files=[("files", ("x.png", _png(), "image/png"))]).status_code == 200
    assert client.post("/api/predict", files={"other": ("a.png", _png())}).status_code == 422
    client.get("/api/info")
    assert len(calls) == 2  # after each prediction request, whatever its outcome; not after /api/info
    assert all(name != threading.main_thread().name for name in calls)  # off the event loop's thread
    calls.clear()
    client = TestClient(_app(model, trim_memory=False))
    client.post("/api/predict", files=[("files", ("x.png", _png(), "image/png"))])
    assert calls == []


def test_the_trimmer_trims_only_when_the_process_has_grown(monkeypatch):
    import fungalzsl.serve.memory as memory

    rss = iter([1000, 1100, 1250, 1400, 900, 1000, 1150])  # start, then one reading per call (+ after trims)
    trims = []
    monkeypatch.setattr(memory, "rss_mb", lambda: next(rss))
    monkeypatch.setattr(memory, "trim_heap", lambda: trims.append(1) or True)
    t = memory.HeapTrimmer(slack_mb=256)  # floor 1000
    assert t() is False  # 1100: warm buffers, within the slack: kept for speed
    assert t() is False  # 1250
    assert t() is True and t.floor == 900  # 1400: grown 400 MB; trimmed down to 900, the new floor
    assert t() is False and t() is False  # 1000, 1150: within 256 MB of 900
    assert len(trims) == 1


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / MB


@pytest.mark.skipif(
    "glibc.malloc.trim_threshold" not in os.environ.get("GLIBC_TUNABLES", ""),
    reason="needs the CLI's tuned glibc settings (scripts/test.sh sets them), under which free() keeps memory",
)
def test_trim_heap_returns_memory_the_allocator_kept():
    from fungalzsl.serve.memory import trim_heap

    blocks = [bytearray(64 * 1024) for _ in range(3200)]  # 200 MB in heap-sized blocks, pages touched
    del blocks  # free() keeps every one of those pages resident under the tuned settings
    kept = _rss_mb()
    assert trim_heap()
    # (the heap may have held free pages from earlier tests, so compare with just before the trim)
    assert kept - _rss_mb() > 150, (kept, _rss_mb())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _loopback(app):
    """``app`` under a real uvicorn on a free loopback port, in a thread; yields the port."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _stalling_upload(port: int, trickle: bool) -> tuple[bytes, float]:
    """Send the headers and a few bytes of a 1 MB upload, then stall (or trickle a byte every 50 ms);
    returns what the server answered and how long that took."""
    import socket

    head = (
        "POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + _part_head() + b"\0" * 10)
        t0, answer = time.monotonic(), b""
        sock.settimeout(0.05 if trickle else 10)
        while time.monotonic() - t0 < 10 and not answer:
            try:
                answer = sock.recv(4096)
            except TimeoutError:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(b"\0")  # a trickling client never lets an idle timer fire
            except ConnectionResetError:
                break
        took = time.monotonic() - t0
        sock.settimeout(10)
        # The server answers and closes with the trickled bytes unread, so the kernel may end the
        # connection with a reset instead of a FIN once the answer is out: both mean "done".
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(4096):
                answer += chunk
    return answer, took


@pytest.mark.network_local
@pytest.mark.timeout(60)
@pytest.mark.parametrize("trickle", [False, True])
def test_a_stalled_upload_gets_408_and_frees_its_queue_place(model, trickle):
    app = _app(model, max_queue=1, upload_timeout=0.5)
    with _loopback(app) as port:
        answer, took = _stalling_upload(port, trickle)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"did not arrive within 0.5 s" in answer and 0.4 < took < 5, took
        import httpx

        files = [("files", ("x.png", _png(), "image/png"))]
        after = httpx.post(f"http://127.0.0.1:{port}/api/predict", files=files, timeout=10)
        assert after.status_code == 200  # the one queue place is free again


def test_serve_has_queue_size_and_upload_timeout_options(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import fungalzsl.serve.app as app_module
    from fungalzsl.cli import app as cli

    seen: dict = {}
    monkeypatch.setattr(Classifier, "load", classmethod(lambda cls, *a, **k: _app_clf()))
    monkeypatch.setattr(app_module, "create_app", lambda clf, sets, **kw: seen.update(kw) or "app")
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: seen.update(ran=app))
    (tmp_path / "config.json").write_text("{}")  # a run folder; Classifier.load is the fake above
    res = CliRunner().invoke(cli, ["serve", str(tmp_path), "--port", str(_free_port()), "--queue-size", "2",
                                   "--upload-timeout", "5"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert seen["max_queue"] == 2 and seen["upload_timeout"] == 5.0 and seen["ran"] == "app"
    bad = CliRunner().invoke(cli, ["serve", str(tmp_path), "--queue-size", "0"])
    assert bad.exit_code == 2 and "--queue-size" in bad.output


def test_port_probe_accepts_a_port_whose_server_just_stopped_and_refuses_a_live_one():
    """A stopped server leaves its accepted connections in TIME_WAIT: uvicorn (SO_REUSEADDR) can listen
    again at once, so the probe before it must not say "Address already in use"."""
    import socket

    from fungalzsl.errors import FungalError
    from fungalzsl.serve.cli import check_port_free

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    with pytest.raises(FungalError, match=f"cannot listen on 127.0.0.1:{port}"):
        check_port_free("127.0.0.1", port)  # a live server: refused
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server side closes first, as a stopped server does: TIME_WAIT on `port`
    client.close()
    server.close()
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # the old probe (no SO_REUSEADDR) fails here ...
    check_port_free("127.0.0.1", port)  # ... this one does not
