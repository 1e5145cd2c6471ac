"""Peak memory of reading one hostile or big image the way predict/evaluate/train/serve do
(``fungalzsl.images.load_image``, then a model's preprocessing: bicubic resize of the shorter side to
224 px, centre crop, to tensor). Each case runs in a fresh process, so ``ru_maxrss`` is its own peak;
``base`` is the same process before the image (Python + torch + torchvision).

    .venv/bin/python benchmarks/image_guard.py --json benchmarks/results/image_guard.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

CASES = {
    "png-20000x1": ("PNG", 20000, 1),
    "png-40000x1": ("PNG", 40000, 1),
    "png-4480x224 (20:1)": ("PNG", 4480, 224),
    "png-8000x8000 (64 MP)": ("PNG", 8000, 8000),
    "jpeg-8000x8000 (64 MP)": ("JPEG", 8000, 8000),
}

_CHILD = r"""
import io, json, resource, sys, time
import torchvision.transforms as T
from fungalzsl.images import ImageReadError, load_image
data = open(sys.argv[1], "rb").read()
tf = T.Compose([T.Resize(224, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToTensor()])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
try:
    shape, result = list(tf(load_image(io.BytesIO(data), name="x")).shape), "read"
except ImageReadError as e:
    shape, result = None, str(e)
print(json.dumps({"bytes": len(data), "seconds": round(time.perf_counter() - t, 3), "result": result,
                  "tensor": shape, "base_mb": round(base / 1024), "peak_mb": round(
                  resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    rows = {}
    tmp = Path(tempfile.mkdtemp(prefix="fungalzsl-image-guard-"))
    for name, (fmt, w, h) in CASES.items():
        path = tmp / f"{len(rows)}.{fmt.lower()}"
        Image.linear_gradient("L").resize((w, h)).convert("RGB").save(path, fmt)
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, check=True
        )
        path.unlink()
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
        r = rows[name]
        print(f"{name:24} {r['bytes']:>9} B  peak {r['peak_mb']:>5} MB (base {r['base_mb']} MB)  "
              f"{r['seconds']:.2f} s  {r['result']}")  # fmt: skip
    tmp.rmdir()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
