"""Generator speed: our skia renderer vs the authors' matplotlib drawing of the same geometry.

Both renderers run on the class-balanced paper mix (spore, hyphae, mycelium interleaved), with the
same number of processes, at 224 px and at the paper's full resolution (2,310 px). Every image is
sampled, drawn and PNG-encoded (level 1) as ``fungalzsl generate`` does; the floor is the time to
only PNG-encode the same pixels. Matplotlib is slow (seconds per mycelium), so it gets a smaller
sample; images/s are comparable because the mix is balanced in both.

    .venv/bin/python benchmarks/generate.py                 # prints a table, writes results JSON
    .venv/bin/python benchmarks/generate.py --full-set      # also times the 6,000-image paper set
    .venv/bin/python benchmarks/generate.py --styles-only   # only the imaging styles vs paper, 224 px
    .venv/bin/python benchmarks/generate.py --styles-only --n-styles 600 --interleave 20  # busy machine

The styles table times every ``--style`` against ``paper`` in the same run (same balanced mix, same
workers), its encode-only floor and the mean PNG size: the photographic styles' noisy pixels cost
more to PNG-encode (with the Up-filter, Huffman-only encoder make_png gives them; paper images keep
Pillow's level 1).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from fungalzsl.runtime import available_cpus, tuned_allocator_for_children
from fungalzsl.synth import encode_png, load_preset, make_image, plan_classes, with_overrides
from fungalzsl.synth.preset import STYLES
from fungalzsl.synth.sample import make_png
from fungalzsl.synth.style import PHOTO_STYLES

RESULTS = Path(__file__).with_name("results") / "generate.json"


def _time_chunk(args: tuple[list, int, str, bool, str]) -> dict:
    """Make a chunk of images in this worker; return wall and CPU seconds of the timed part."""
    jobs, size, renderer, encode_only, style = args
    preset = with_overrides(load_preset("paper"), style=style)
    # Untimed: the pixels to encode, each with the PNG options make_png gives its own style.
    pixels = [make_image(preset, 0, j, size, "fast") for j in jobs] if encode_only else []
    photo = [row.get("style") in PHOTO_STYLES for _, row in pixels]
    # Warm the renderer's imports and the camera's per-size caches (noise bank, grids), untimed: a
    # dataset worker makes many images of one size, so they are warm for all but its first.
    make_png(preset, 0, jobs[0], size if renderer == "fast" else 32, renderer)
    t, c = time.perf_counter(), time.process_time()
    if encode_only:
        sizes = [len(encode_png(rgb, photo=ph)) for (rgb, _), ph in zip(pixels, photo)]
    else:  # what the dataset writer runs per image
        sizes = [len(make_png(preset, 0, j, size, renderer)[0]) for j in jobs]
    return {
        "wall": time.perf_counter() - t,
        "cpu": time.process_time() - c,
        "n": len(jobs),
        "bytes": sum(sizes),
    }


def measure(
    n: int, size: int, renderer: str, workers: int, encode_only: bool = False, style: str = "paper"
) -> dict:
    """Images/s over ``n`` balanced images split across ``workers`` processes.

    ``images_per_s`` = n / the busiest worker's wall seconds; ``images_per_cpu_s`` = n / its CPU
    seconds (the fair figure when other jobs share the machine). Process start-up and imports are
    excluded for every renderer alike, so the ratios compare drawing work only."""
    jobs = plan_classes(load_preset("paper"), n)
    chunks = [jobs[w::workers] for w in range(workers)]
    # The workers run with the glibc malloc tunables, as `fungalzsl generate`'s workers do (the CLI
    # re-executes itself with them): every measurement below, the encode floor included.
    with tuned_allocator_for_children(), mp.get_context("spawn").Pool(workers) as pool:
        parts = pool.map(_time_chunk, [(c, size, renderer, encode_only, style) for c in chunks])
    wall = max(p["wall"] for p in parts)
    cpu = max(p["cpu"] for p in parts)
    return {"n": n, "size": size, "renderer": "png-encode-only" if encode_only else renderer, "style": style,
            "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "images_per_s": round(n / wall, 2), "images_per_cpu_s": round(n / cpu, 2),
            "png_kib_per_image": round(sum(p["bytes"] for p in parts) / n / 1024, 1)}  # fmt: skip


def full_set(workers: int) -> dict:
    """Wall time of the whole 6,000-image paper set at 224 px through the public API."""
    from fungalzsl.synth import generate_dataset

    out = Path(tempfile.mkdtemp(prefix="fungalzsl-bench-"))
    try:
        t = time.perf_counter()
        generate_dataset(out, "paper", workers=workers, progress=False)
        wall = time.perf_counter() - t
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"n": 6000, "size": 224, "wall_s": round(wall, 2), "images_per_s": round(6000 / wall, 1)}


def measure_styles(n: int, workers: int, rounds: int = 3) -> list[dict]:
    """Every style at 224 px in one run; cost ratios are per image against the paper style.

    The styles take turns for ``rounds`` rounds and each keeps its fastest round (by CPU seconds), so
    a burst of load from other jobs on a shared machine does not land on one style only."""
    best: dict[str, dict] = {}
    for _ in range(rounds):
        for style in STYLES:
            fast = measure(n, 224, "fast", workers, style=style)
            enc = measure(n, 224, "fast", workers, encode_only=True, style=style)
            prev = best.get(style)
            if prev is None or fast["images_per_cpu_s"] > prev["fast"]["images_per_cpu_s"]:
                best[style] = {"style": style, "fast": fast, "encode_only": enc, "rounds": rounds}
    rows = [best[s] for s in STYLES]
    paper = rows[0]["fast"]
    for r in rows:
        r["cost_vs_paper"] = round(paper["images_per_s"] / r["fast"]["images_per_s"], 2)
        r["cost_vs_paper_cpu"] = round(paper["images_per_cpu_s"] / r["fast"]["images_per_cpu_s"], 2)
    return rows


def _interleaved(args: tuple[int, int, int]) -> dict[str, dict]:
    """In one worker: every style in turn on the same ``chunk`` images, ``n // chunk`` times over."""
    n, chunk, size = args
    jobs = plan_classes(load_preset("paper"), n)
    sums = {s: {"wall": 0.0, "cpu": 0.0, "n": 0, "bytes": 0} for s in STYLES}
    for k, lo in enumerate(range(0, n, chunk)):
        order = STYLES if k % 2 == 0 else STYLES[::-1]  # neither end of a turn is always the same style
        for style in order:
            part = _time_chunk((jobs[lo : lo + chunk], size, "fast", False, style))
            for key in sums[style]:
                sums[style][key] += part[key]
    return sums


def measure_styles_interleaved(n: int, chunk: int) -> list[dict]:
    """Every style at 224 px, taking turns every ``chunk`` images in one process: a burst of load
    from other jobs lands on all styles alike, so the ratios hold on a busy machine. Means, not bests."""
    with tuned_allocator_for_children(), mp.get_context("spawn").Pool(1) as pool:
        sums = pool.apply(_interleaved, ((n, chunk, 224),))
    rows = []
    for style in STYLES:
        t = sums[style]
        fast = {"n": t["n"], "size": 224, "renderer": "fast", "style": style, "chunk": chunk,
                "wall_s": round(t["wall"], 3), "cpu_s": round(t["cpu"], 3),
                "images_per_s": round(t["n"] / t["wall"], 2), "images_per_cpu_s": round(t["n"] / t["cpu"], 2),
                "png_kib_per_image": round(t["bytes"] / t["n"] / 1024, 1)}  # fmt: skip
        rows.append({"style": style, "fast": fast})
    paper = rows[0]["fast"]
    for r in rows:
        r["cost_vs_paper"] = round(paper["images_per_s"] / r["fast"]["images_per_s"], 2)
        r["cost_vs_paper_cpu"] = round(paper["images_per_cpu_s"] / r["fast"]["images_per_cpu_s"], 2)
    return rows


def print_styles(rows: list[dict]) -> None:
    print(
        f"{'style':>11} {'img/s':>8} {'img/cpu-s':>10} {'cost vs paper':>14} {'(cpu)':>6} "
        f"{'encode-only img/cpu-s':>22} {'PNG KiB/img':>12}"
    )
    for r in rows:
        f = r["fast"]
        print(f"{r['style']:>11} {f['images_per_s']:>8.1f} {f['images_per_cpu_s']:>10.1f} "
              f"{r['cost_vs_paper']:>13.2f}x {r['cost_vs_paper_cpu']:>5.2f}x "
              f"{r['encode_only']['images_per_cpu_s'] if 'encode_only' in r else float('nan'):>22.1f} "
              f"{f['png_kib_per_image']:>12.1f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=available_cpus())
    ap.add_argument("--n-fast", type=int, default=1200, help="fast renderer images at 224 px")
    ap.add_argument("--n-mpl", type=int, default=30, help="matplotlib images at 224 px")
    ap.add_argument("--n-fast-full", type=int, default=60, help="fast renderer images at full resolution")
    ap.add_argument("--n-mpl-full", type=int, default=12, help="matplotlib images at full resolution")
    ap.add_argument("--full-res", type=int, default=2310)
    ap.add_argument("--full-set", action="store_true", help="also time the 6,000-image set end to end")
    ap.add_argument("--n-styles", type=int, default=300, help="images per style in the styles table")
    ap.add_argument("--styles-only", action="store_true", help="only the styles table")
    ap.add_argument("--style-rounds", type=int, default=3, help="turns per style; each keeps its best")
    ap.add_argument("--interleave", type=int, default=0, metavar="CHUNK",
                    help="styles table only: styles take turns every CHUNK images in one process (means)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    if a.styles_only:
        load = os.getloadavg()
        if a.interleave:
            rows = measure_styles_interleaved(a.n_styles, a.interleave)
        else:
            rows = measure_styles(a.n_styles, a.workers, a.style_rounds)
        print_styles(rows)
        out = a.out.with_name("generate_styles.json") if a.out == RESULTS else a.out
        out.parent.mkdir(parents=True, exist_ok=True)
        machine = {"cpus": available_cpus(), "load_avg_before": load, "load_avg_after": os.getloadavg()}
        out.write_text(
            json.dumps({"benchmark": "generate-styles", "machine": machine, "styles": rows}, indent=2) + "\n"
        )
        print(f"wrote {out}")
        return

    rows = []
    for size, n_fast, n_mpl in ((224, a.n_fast, a.n_mpl), (a.full_res, a.n_fast_full, a.n_mpl_full)):
        fast = measure(n_fast, size, "fast", a.workers)
        enc = measure(n_fast, size, "fast", a.workers, encode_only=True)
        mpl = measure(n_mpl, size, "matplotlib", a.workers)
        rows.append({
            "size": size, "workers": a.workers, "fast": fast, "matplotlib": mpl, "encode_only": enc,
            "speedup_vs_matplotlib": round(fast["images_per_s"] / mpl["images_per_s"], 1),
            "speedup_vs_matplotlib_cpu": round(fast["images_per_cpu_s"] / mpl["images_per_cpu_s"], 1),
            "generation_over_encode": round(enc["images_per_s"] / fast["images_per_s"], 2),
            "generation_over_encode_cpu": round(enc["images_per_cpu_s"] / fast["images_per_cpu_s"], 2),
        })  # fmt: skip
    result = {
        "benchmark": "generate",
        "machine": {
            "cpus": available_cpus(),
            "python": platform.python_version(),
            "load_avg_before": os.getloadavg(),
        },
        "mix": "paper preset, classes interleaved (balanced), seed 0, PNG compress_level 1",
        "results": rows,
    }
    result["styles"] = measure_styles(a.n_styles, a.workers, a.style_rounds)
    if a.full_set:
        result["full_set"] = full_set(a.workers)
    result["machine"]["load_avg_after"] = os.getloadavg()

    print(f"{'size':>6} {'':>5} {'fast img/s':>11} {'matplotlib img/s':>17} {'speed-up':>9} "
          f"{'encode-only img/s':>18} {'gen/encode':>11}")  # fmt: skip
    for r in rows:
        for clock, key, sfx in (("wall", "images_per_s", ""), ("cpu", "images_per_cpu_s", "_cpu")):
            print(f"{r['size']:>6} {clock:>5} {r['fast'][key]:>11.1f} {r['matplotlib'][key]:>17.2f} "
                  f"{r['speedup_vs_matplotlib' + sfx]:>8.0f}x {r['encode_only'][key]:>18.1f} "
                  f"{r['generation_over_encode' + sfx]:>10.2f}x")  # fmt: skip
    print_styles(result["styles"])
    if "full_set" in result:
        fs = result["full_set"]
        print(
            f"6,000 images at 224 px: {fs['wall_s']} s wall ({fs['images_per_s']} img/s, {a.workers} workers)"
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
