"""What durable generation costs: ``fungalzsl generate`` with and without the fsyncs that make a row
in the resume journal mean "this image is on disk", and the check ``--resume`` runs on kept images.

Both variants run in this process (one worker), alternating, on the same settings: "durable" is the
shipped code (``Journal.flush`` puts the batch's files on disk, ``fungalzsl.io.make_durable``, before
appending their rows); "no-fsync" makes that call a no-op (the journal's own fsync, older than this
change, stays in both); "fsync-each" is the fallback used where ``syncfs`` is missing (an fsync of
every file and folder). Then ``file_is_whole`` (Pillow ``verify()``) is timed
over every image of the set, which is what a ``--resume`` of a finished part costs per image.

    .venv/bin/python benchmarks/durability.py                  # 300 images of 224 px, 3 rounds
    .venv/bin/python benchmarks/durability.py --images 120 --size 64 --rounds 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import fungalzsl.io
import fungalzsl.synth.layout as layout
from fungalzsl.synth import generate_dataset

RESULTS = Path(__file__).with_name("results") / "durability.json"


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    """``durable`` as shipped; ``no-fsync``: the writer as it was before; ``fsync-each``: no syncfs."""
    saved = layout.make_durable, fungalzsl.io._syncfs
    if name == "no-fsync":
        layout.make_durable = lambda _files: None
    elif name == "fsync-each":
        fungalzsl.io._syncfs = lambda _folder: False
    try:
        yield
    finally:
        layout.make_durable, fungalzsl.io._syncfs = saved


def one_run(root: Path, images: int, size: int, name: str) -> float:
    out = root / name
    shutil.rmtree(out, ignore_errors=True)
    with variant(name):
        t = time.perf_counter()
        generate_dataset(out, "paper", num_images=images, size=size, seed=0, workers=1, progress=False)
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    times: dict[str, list[float]] = {"no-fsync": [], "durable": [], "fsync-each": []}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:  # on the disk datasets go to, not tmpfs
        root = Path(tmp)
        one_run(root, 8, args.size, "durable")  # warm imports and caches, untimed
        for _ in range(args.rounds):
            for name, seconds in times.items():
                seconds.append(one_run(root, args.images, args.size, name))
        pngs = sorted((root / "durable").rglob("*.png"))
        t = time.perf_counter()
        whole = sum(layout.file_is_whole(p) for p in pngs)
        check_s = time.perf_counter() - t
    assert whole == len(pngs)
    best = {k: min(v) for k, v in times.items()}
    result = {
        "images": args.images, "size": args.size, "rounds": args.rounds, "workers": 1,
        "seconds": times, "images_per_s": {k: args.images / v for k, v in best.items()},
        "durable_over_no_fsync": best["durable"] / best["no-fsync"],
        "fsync_each_over_no_fsync": best["fsync-each"] / best["no-fsync"],
        "resume_check_ms_per_image": 1000 * check_s / len(pngs),
        "machine": platform.platform(), "python": platform.python_version(),
    }  # fmt: skip
    print(f"{'variant':<10} {'best s':>8} {'images/s':>9}")
    for k in times:
        print(f"{k:<10} {best[k]:8.2f} {result['images_per_s'][k]:9.1f}")
    print(f"durable / no-fsync time: {result['durable_over_no_fsync']:.3f}; "
          f"fsync-each / no-fsync: {result['fsync_each_over_no_fsync']:.3f}")  # fmt: skip
    print(f"--resume check (Pillow verify): {result['resume_check_ms_per_image']:.2f} ms per image")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
