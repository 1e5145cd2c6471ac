"""The web page: its HTTP API, its limits, and a real headless Chromium uploading an image."""

import csv
import io
import shutil
import socket
import threading
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fungalzsl import Classifier
from fungalzsl.serve.app import create_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clf(tiny_pipeline):
    return Classifier.load(tiny_pipeline / "run")


@pytest.fixture(scope="module")
def test_images(tiny_pipeline):
    return sorted((tiny_pipeline / "data" / "test").rglob("*.png"))


@pytest.fixture(scope="module")
def client(clf, tiny_pipeline):
    app = create_app(
        clf, {"bank": tiny_pipeline / "descriptions" / "bank.jsonl"}, max_files=4, max_file_mb=0.05
    )
    return TestClient(app)


def _png(path):
    return (path.name, path.read_bytes(), "image/png")


def test_page_and_info(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="files"' in page.text
    info = client.get("/api/info").json()
    assert info["label_sets"]["run"] == ["spore", "hyphae", "mycelium"]
    assert "bank" in info["label_sets"] and info["max_files"] == 4


def test_predict_matches_the_python_api(client, clf, test_images):
    r = client.post("/api/predict", files=[("files", _png(p)) for p in test_images[:3]])
    assert r.status_code == 200
    body = r.json()
    expected = clf.predict(test_images[:3])
    for got, want in zip(body["results"], expected):
        assert got["prediction"] == want.prediction
        assert got["probabilities"] == pytest.approx(want.probabilities, abs=1e-5)


def test_bad_uploads_get_per_file_errors_and_limits_hold(client, test_images, tmp_path):
    big = io.BytesIO()
    Image.effect_noise((256, 256), 64).save(big, "PNG")  # incompressible: over the 0.05 MB test limit
    files = [
        ("files", _png(test_images[0])),
        ("files", ("notes.txt", b"hello", "text/plain")),
        ("files", ("big.png", big.getvalue(), "image/png")),
    ]
    body = client.post("/api/predict", files=files).json()
    ok, text, large = body["results"]
    assert ok["error"] is None and ok["prediction"]
    assert "not a readable image" in text["error"]
    assert "larger than" in large["error"]
    too_many = client.post("/api/predict", files=[("files", _png(test_images[0]))] * 5)
    assert too_many.status_code == 413
    unknown = client.post("/api/predict", files=[("files", _png(test_images[0]))], data={"label_set": "nope"})
    assert unknown.status_code == 400


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.browser
def test_headless_chromium_uploads_an_image_and_reads_the_prediction(
    clf, test_images, tiny_pipeline, tmp_path
):
    """Upload, read the row, switch the label set (every shown image is rescored and the rows say which
    set scored them), upload more (the status counts all rows), download the CSV, clear."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    import uvicorn

    port = _free_port()
    two = tiny_pipeline.parent / "two-stages.jsonl"
    two.write_text(
        '{"class": "early", "text": "round yellow spores, isolated single cells"}\n'
        '{"class": "late", "text": "dense red branching network of mycelium filaments"}\n'
    )
    web = create_app(clf, {"two": two})
    server = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    image, more = test_images[0], test_images[1:3]
    expected = clf.predict(image)[0].prediction
    clf_two = Classifier.load(tiny_pipeline, classes=two)
    expected_two = {p.name: r.prediction for p, r in zip(test_images[:3], clf_two.predict(test_images[:3]))}
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            page = browser.new_page(accept_downloads=True)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.querySelectorAll('#labelset option').length > 0")
            page.set_input_files("#files", str(image))
            row = page.locator(f'tr.result[data-name="{image.name}"]')
            row.wait_for(timeout=30_000)
            assert row.locator(".top-class").inner_text().strip() == expected
            assert row.locator(".label-set").inner_text().strip() == "run"
            assert row.locator(".bar").count() == 3
            # switching the label set rescores the image already shown, in place
            page.select_option("#labelset", "two")
            page.wait_for_function("document.querySelector('tr.result .label-set').textContent === 'two'")
            assert row.locator(".bar").count() == 2
            assert row.locator(".top-class").inner_text().strip() == expected_two[image.name]
            # a second upload is scored with the current set and the status counts every row
            page.set_input_files("#files", [str(p) for p in more])
            page.wait_for_function("document.querySelectorAll('tr.result').length === 3")
            page.wait_for_function("document.querySelector('#status').textContent.startsWith('3 of 3')")
            assert page.inner_text("#status") == "3 of 3 classified (label set: two)."
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            with page.expect_download() as dl:
                page.click("#download")
            rows = list(csv.DictReader(io.StringIO(dl.value.path().read_text())))
            page.click("#clear")
            page.wait_for_function("document.querySelectorAll('tr.result').length === 0")
            cleared = (page.is_hidden("#results"), page.is_disabled("#download"), page.inner_text("#status"))
            page.select_option("#labelset", "run")  # nothing left to rescore: no request, no rows
            page.wait_for_timeout(300)
            assert page.locator("tr.result").count() == 0
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert cleared == (True, True, "")
    assert list(rows[0]) == ["path", "label_set", "prediction", "p_early", "p_late", "error"]
    assert [r["path"] for r in rows] == [p.name for p in test_images[:3]]
    assert all(r["label_set"] == "two" and r["prediction"] == expected_two[r["path"]] for r in rows)
    shot = Image.open(tmp_path / "page.png")
    assert shot.width >= 800 and shot.height >= 300


@pytest.mark.network_local
@pytest.mark.timeout(180)
def test_bounded_load_on_loopback(clf, test_images):
    """A fixed load on 127.0.0.1 that stops by itself: 4 clients x 6 uploads of 3 images against a
    queue of 2, while a fifth polls /api/info. Every upload is answered 200 (with the Python API's
    predictions) or 503 with Retry-After; nothing hangs, /api/info never waits behind the model."""
    import httpx
    import uvicorn

    port = _free_port()
    app = create_app(clf, max_files=8, max_queue=2)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    images = test_images[:3]
    expected = {p.name: q.prediction for p, q in zip(images, clf.predict(images))}
    statuses: list[int] = []
    info_waits: list[float] = []
    problems: list[str] = []
    done = threading.Event()

    def uploader() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            for _ in range(6):
                r = c.post("/api/predict", files=[("files", _png(p)) for p in images])
                statuses.append(r.status_code)
                if r.status_code == 200:
                    got = {x["name"]: x["prediction"] for x in r.json()["results"]}
                    if got != expected:
                        problems.append(f"wrong predictions {got}")
                elif r.status_code != 503 or int(r.headers.get("retry-after", "0")) < 1:
                    problems.append(f"{r.status_code} {r.text[:200]}")

    def poller() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            while not done.is_set():
                t0 = time.perf_counter()
                if c.get("/api/info").status_code != 200:
                    problems.append("info failed")
                info_waits.append(time.perf_counter() - t0)
                time.sleep(0.05)

    clients = [threading.Thread(target=uploader) for _ in range(4)]
    watch = threading.Thread(target=poller)
    try:
        watch.start()
        for t in clients:
            t.start()
        for t in clients:
            t.join(150)
        done.set()
        watch.join(10)
    finally:
        done.set()
        server.should_exit = True
        thread.join(10)
    assert not any(t.is_alive() for t in clients) and not thread.is_alive()
    assert problems == []
    assert len(statuses) == 24 and statuses.count(200) >= 6 and set(statuses) <= {200, 503}
    assert info_waits and max(info_waits) < 2.0, f"/api/info waited up to {max(info_waits):.2f} s"
    assert app.state.worker.admitted == 0  # every slot handed back
