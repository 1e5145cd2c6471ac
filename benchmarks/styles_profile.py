"""Where a photographic style's per-image time goes: CPU milliseconds per stage, per class.

Wraps the stages of ``style.style_image`` and the PNG encoder with CPU timers, then makes images of
the class-balanced paper mix exactly as ``benchmarks/generate.py`` does (one process, 224 px).
Nested stages are counted in their parents too (``draw_micro`` holds ``_draw_tubes``,
``_draw_cells`` and ``_draw_defocused``, and the defocused plane's tubes and cells are also in those
two; ``finish_colony`` is the camera of a colony photograph). The timers add a few microseconds per
call. The process runs with the glibc malloc tunables ``fungalzsl generate``'s workers get.

    .venv/bin/python benchmarks/styles_profile.py --style micrograph --n 300
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from fungalzsl.runtime import GLIBC_TUNABLES, wants_allocator_tuning
from fungalzsl.synth import colony, load_preset, micro, optics, plan_classes, sample, style, with_overrides
from fungalzsl.synth.sample import make_png

STAGES = {
    optics: ("sample_optics", "draw_under", "draw_over", "finish"),
    micro: ("micro_scene", "micro_decor", "draw_micro", "_draw_tubes", "_draw_cells", "_draw_defocused"),
    colony: ("sample_look", "colony_scene", "draw_colony", "finish_colony"),
    style: ("_rgb",),
    sample: ("encode_png",),
}


def _timed(fn: Callable, name: str, totals: dict[str, float]) -> Callable:
    def run(*args: Any, **kwargs: Any) -> Any:
        t = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] += time.process_time() - t

    return run


def profile(style_name: str, n: int, size: int = 224) -> dict[str, Any]:
    """CPU ms per image: the total, per class, and per stage (averaged over all ``n`` images)."""
    totals: dict[str, float] = defaultdict(float)
    for module, names in STAGES.items():
        for name in names:
            setattr(module, name, _timed(getattr(module, name), name, totals))
    preset = with_overrides(load_preset("paper"), style=style_name)
    jobs = plan_classes(load_preset("paper"), n)
    make_png(preset, 0, jobs[0], 32)  # imports and caches, untimed
    totals.clear()
    per_class: dict[str, list[float]] = defaultdict(list)
    for job in jobs:
        t = time.process_time()
        make_png(preset, 0, job, size)
        per_class[job.label].append(time.process_time() - t)
    total = sum(sum(v) for v in per_class.values())
    return {
        "style": style_name,
        "n": n,
        "size": size,
        "ms_per_image": round(total / n * 1e3, 2),
        "ms_per_class": {k: round(sum(v) / len(v) * 1e3, 2) for k, v in per_class.items()},
        "ms_per_stage": {k: round(v / n * 1e3, 2) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--style", default="micrograph", choices=["paper", "micrograph", "colony", "mixed"])
    ap.add_argument("--n", type=int, default=300, help="images (class-balanced)")
    a = ap.parse_args()
    if wants_allocator_tuning():  # as the generate workers run (numpy's large temporaries stay mapped)
        tunables = ":".join(x for x in (os.environ.get("GLIBC_TUNABLES"), GLIBC_TUNABLES) if x)
        os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, GLIBC_TUNABLES=tunables))
    r = profile(a.style, a.n)
    print(f"{r['style']}: {r['ms_per_image']:.2f} ms of CPU per image at {r['size']} px ({r['n']} images)")
    print("  per class: " + ", ".join(f"{k} {v:.2f} ms" for k, v in r["ms_per_class"].items()))
    for k, v in r["ms_per_stage"].items():
        print(f"  {k:<16} {v:6.2f} ms")


if __name__ == "__main__":
    main()
