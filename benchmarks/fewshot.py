"""Few-shot adaptation on labelled real (or any) images through the product's own code path
(:func:`fungalzsl.fewshot.report.fewshot_run`, as ``fungalzsl fewshot``): every adapter at k = 1, 2, 5, 10 on
every feature kind and both view counts, side by side on the same draws, then one summary table over
the data sets (balanced accuracy, mean over the draws, and per source).

* features ``embedding``: the run's image embedding (its text classifier gives zero-shot, Tip-Adapter's
  zero-shot term and the anchored prototypes' text); ``backbone``: the image tower's pooled features before
  the projection (for ``lite`` with a frozen image tower: EfficientNet-Lite0's ImageNet 1280-d vector);
* features ``both``: the two concatenated with equal weight (anchored puts the text on the embedding half);
* views ``1``: the centre crop as ``fungalzsl predict`` sees it; ``8``: the normalised mean over its 8
  flips / 90-degree rotations (shots and queries alike; the zero-shot term stays the centre crop's).

    python benchmarks/fewshot.py --run runs/default/run --data data/real-dev --data OTHER --out DIR

Writes DIR/<data name>/ (results.json, results.md, fewshot.png as ``fungalzsl fewshot``) and DIR/summary.md."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "results" / "fewshot"


def summary(results: dict[str, dict]) -> str:
    """One row per (set, k, features, views, method): balanced accuracy [95% CI] and per source."""
    lines = ["| set | k | features | views | method | balanced acc. [95% CI] | per source (bal. acc.) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, res in results.items():
        for r in res["results"]:
            lo, hi = r["balanced_accuracy"]["ci95"]
            per = ", ".join(f"{s} {v['balanced_accuracy']:.2f}" for s, v in r["per_source"].items())
            lines.append(f"| {name} | {r['k']} | {r['features']} | {r['views']} | {r['method']} | "
                         f"{r['balanced_accuracy']['mean']:.3f} [{lo:.3f}, {hi:.3f}] | {per} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("runs/default/run"))
    ap.add_argument("--data", type=Path, action="append", help="a labelled set (repeatable)")
    ap.add_argument("--k", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 5, 10])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    from fungalzsl.fewshot.report import fewshot_run
    from fungalzsl.runtime import configure_torch_threads

    configure_torch_threads()
    results = {}
    for data in args.data or [Path("data/real-dev")]:
        t0 = time.perf_counter()
        name = data.name if data.name not in ("train", "val", "test") else f"{data.parent.name}-{data.name}"
        results[name] = fewshot_run(args.run, data, args.out / name, args.k, args.repeats, args.seed,
                                    features=("embedding", "backbone", "both"), views=(1, 8))  # fmt: skip
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    table = summary(results)
    print(table)
    (args.out / "summary.md").write_text(f"`{' '.join(['python', *sys.argv])}`\n\n{table}")


if __name__ == "__main__":
    main()
