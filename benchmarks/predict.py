"""Prediction speed: images/s on PyTorch and onnxruntime, cold start of ``predict`` and ``serve``, peak RSS.

    python benchmarks/predict.py --run runs/default/run --images runs/default/data/test

Prints a table and writes benchmarks/results/predict.json. Both backends classify the same images in
the same process, one after the other, so their ratio is measured side by side."""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "predict.json"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed_child(cmd: list[str], ready=None, timeout: float = 300) -> tuple[float, float]:
    """Wall seconds until the command exits (or ``ready()`` turns true), and its peak RSS in MB."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if ready is None:
        _, _, usage = os.wait4(proc.pid, 0)
        return time.perf_counter() - t0, usage.ru_maxrss / 1024
    while time.perf_counter() - t0 < timeout:
        if ready():
            elapsed = time.perf_counter() - t0
            proc.terminate()
            _, _, usage = os.wait4(proc.pid, 0)
            return elapsed, usage.ru_maxrss / 1024
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{cmd} did not become ready in {timeout} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/default/run"))
    ap.add_argument("--images", type=Path, default=Path("runs/default/data/test"))
    ap.add_argument("--limit", type=int, default=300, help="images to classify per backend")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    if not (args.run / "model.safetensors").is_file():
        sys.exit(f"no trained run at {args.run}: run 'fungalzsl run' first or pass --run")

    from fungalzsl.images import expand_inputs

    paths = expand_inputs([args.images])[0][: args.limit]
    rows = []
    # Cold starts first, while this process is small: a forked child's peak RSS counts what it inherits.
    exe = [sys.executable, "-m", "fungalzsl"]
    wall, rss = _timed_child([*exe, "predict", str(args.run), str(paths[0])])
    rows.append({"what": "cold start: predict one image, s", "value": wall})
    rows.append({"what": "cold start: predict peak RSS, MB", "value": rss})

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def up() -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=1).status == 200
        except OSError:
            return False

    wall, rss = _timed_child([*exe, "serve", str(args.run), "--port", str(port)], ready=up)
    rows.append({"what": "cold start: serve until first answer, s", "value": wall})
    rows.append({"what": "serve peak RSS, MB", "value": rss})

    from fungalzsl import Classifier
    from fungalzsl.predict.onnx import OnnxClassifier, export_onnx
    from fungalzsl.runtime import configure_torch_threads

    configure_torch_threads()
    clf = Classifier.load(args.run)
    clf.predict(paths[:8], batch_size=args.batch_size)  # warm-up
    t0 = time.perf_counter()
    torch_results = clf.predict(paths, batch_size=args.batch_size)
    torch_s = time.perf_counter() - t0
    rows.append({"what": "predict, PyTorch (images/s)", "value": len(paths) / torch_s})

    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(args.run, tmp)
        onnx = OnnxClassifier(tmp)
        onnx.predict(paths[:8], batch_size=args.batch_size)
        t0 = time.perf_counter()
        onnx_results = onnx.predict(paths, batch_size=args.batch_size)
        onnx_s = time.perf_counter() - t0
    rows.append({"what": "predict, onnxruntime (images/s)", "value": len(paths) / onnx_s})
    rows.append({"what": "onnxruntime / PyTorch speed", "value": torch_s / onnx_s})
    agree = sum(a.prediction == b.prediction for a, b in zip(torch_results, onnx_results)) / len(paths)
    rows.append({"what": "top-1 agreement PyTorch vs ONNX", "value": agree})
    rows.append({"what": "peak RSS of this process, MB", "value": _rss_mb()})

    width = max(len(r["what"]) for r in rows)
    print(f"{'measure':<{width}}  value")
    for r in rows:
        print(f"{r['what']:<{width}}  {r['value']:.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {"images": len(paths), "batch_size": args.batch_size, "cpus": os.cpu_count(), "run": str(args.run)}
    RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
