"""Throughput of ``fungalzsl describe --backend bank`` (descriptions per second, end to end: composing,
clean-up, length filter, near-duplicate check, fsynced appends) and the stats of the set it wrote.

    .venv/bin/python benchmarks/describe.py --per-class 1000 --repeats 3 --json benchmarks/describe.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from fungalzsl.text.generate import generate_descriptions
from fungalzsl.text.stats import describe_stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    rates, stats = [], {}
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "bank.jsonl"
            t0 = time.perf_counter()
            rep = generate_descriptions(
                "bank", per_class=args.per_class, out=out, seed=i, batch_size=args.batch_size
            )
            dt = time.perf_counter() - t0
            rates.append(rep.total_added / dt)
            if i == 0:
                stats = describe_stats([out])["sets"][0]["classes"]
    result = {
        "backend": "bank",
        "per_class": args.per_class,
        "batch_size": args.batch_size,
        "descriptions_per_s": {
            "median": round(statistics.median(rates), 1),
            "all": [round(r, 1) for r in rates],
        },
        "stats_seed0": stats,
    }
    print(f"bank: {args.per_class} per class x 3 classes, batch {args.batch_size}")
    print(f"descriptions/s (median of {args.repeats}): {result['descriptions_per_s']['median']}")
    for c, s in stats.items():
        w = s["words"]
        print(
            f"  {c:<9} distinct {s['distinct']:>5}/{s['n']}  words {w['min']}/{w['mean']}/{w['max']}"
            f"  near-dup {s['near_duplicate_rate']:.1%}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
