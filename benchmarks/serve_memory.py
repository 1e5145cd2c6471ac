"""Memory a ``fungalzsl serve`` process keeps after a large upload, and its conv-net speed, under each
glibc allocator setting: the CLI's tuned tunables (``fungalzsl.runtime``), glibc's defaults (what
``FUNGALZSL_NO_REEXEC=1`` gives), and tuned tunables with a 128 MB trim threshold instead of 64 GB;
and with the server calling ``malloc_trim`` never, only when it has grown
(``fungalzsl.serve.memory.HeapTrimmer``, what it does now), or after every request.

Each setting runs in its own server process (the lite model at 224 px, untrained weights: memory and
speed do not depend on training) on 127.0.0.1; we read its VmRSS/VmHWM from /proc before and after
one large upload (``--big`` PNGs of 4000x3000 px, each decoded to 36 MB), then time ``--repeats``
requests of 16 small 224 px images (the conv net's speed; the minimum is the figure to compare on a
shared machine, the median shows the noise).

    .venv/bin/python benchmarks/serve_memory.py --json benchmarks/results/serve_memory.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

TUNED = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=68719476736"
SETTINGS = {  # name: (GLIBC_TUNABLES or None for glibc's defaults, trim: "no", "grown" or "always")
    "tuned (CLI before)": (TUNED, "no"),
    "tuned + trim when grown (now)": (TUNED, "grown"),
    "tuned + trim every request": (TUNED, "always"),
    "glibc defaults": (None, "no"),
    "tuned, trim_threshold 128 MB": (
        "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=134217728",
        "no",
    ),
}

_SERVER = r"""
import functools, sys, torch, uvicorn
import fungalzsl.serve.app as serve_app
from fungalzsl import Classifier
from fungalzsl.models import build_model
from fungalzsl.runtime import configure_torch_threads
from fungalzsl.serve.app import create_app
configure_torch_threads()
if sys.argv[2] == "always":
    serve_app.HeapTrimmer = functools.partial(serve_app.HeapTrimmer, slack_mb=0)
torch.manual_seed(0)
model = build_model("lite", pretrained=False).eval()
clf = Classifier(model, ["spore", "hyphae", "mycelium"], torch.randn(3, model.embed_dim), 100.0)
app = create_app(clf, max_files=64, max_file_mb=20, max_upload_mb=400, trim_memory=sys.argv[2] != "no")
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _mem_mb(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    vals = {ln.split(":")[0]: int(ln.split()[1]) / 1024 for ln in status.splitlines() if ln.startswith("Vm")}
    return {"rss": round(vals["VmRSS"]), "peak": round(vals["VmHWM"])}


def _png(w: int, h: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 255, (h // 40, w // 40, 3), dtype=np.uint8))
    buf = io.BytesIO()
    small.resize((w, h), Image.Resampling.BICUBIC).save(buf, "PNG")
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(tunables: str | None, trim: str, big: list[bytes], small: list[bytes], repeats: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if tunables:
        env["GLIBC_TUNABLES"] = tunables
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(port), trim], env=env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as c:
            for _ in range(600):
                try:
                    c.get("/api/info")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            files = [("files", (f"s{i}.png", b, "image/png")) for i, b in enumerate(small)]
            c.post("/api/predict", files=files).raise_for_status()  # warm-up
            time.sleep(1)
            idle = _mem_mb(proc.pid)
            t = time.perf_counter()
            r = c.post(
                "/api/predict", files=[("files", (f"b{i}.png", b, "image/png")) for i, b in enumerate(big)]
            )
            big_s = time.perf_counter() - t
            assert r.status_code == 200 and all(x["error"] is None for x in r.json()["results"]), r.text[:300]
            time.sleep(1)
            after = _mem_mb(proc.pid)
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                c.post("/api/predict", files=files).raise_for_status()
                times.append(time.perf_counter() - t)
            time.sleep(1)
            end = _mem_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    return {
        "rss_idle_mb": idle["rss"],
        "rss_after_big_mb": after["rss"],
        "peak_mb": after["peak"],
        "rss_after_small_mb": end["rss"],
        "big_upload_s": round(big_s, 2),
        "small_request_s_median": round(statistics.median(times), 3),
        "small_request_s_min": round(min(times), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--big", type=int, default=16, help="4000x3000 PNGs in the large upload")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    big = [_png(4000, 3000, i) for i in range(args.big)]
    small = [_png(224, 224, 100 + i) for i in range(16)]
    print(f"large upload: {args.big} PNGs, {sum(map(len, big)) / 2**20:.0f} MB")
    rows = {}
    for name, (tunables, trim) in SETTINGS.items():
        rows[name] = r = measure(tunables, trim, big, small, args.repeats)
        print(f"{name:32} RSS idle {r['rss_idle_mb']:>5} MB, after large upload {r['rss_after_big_mb']:>5} MB "
              f"(peak {r['peak_mb']}), 16 small images {r['small_request_s_min']:.3f} s min, {r['small_request_s_median']:.3f} s median")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"big_images": args.big, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
