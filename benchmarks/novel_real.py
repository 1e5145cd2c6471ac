"""Does calibrated stacking cost real trained-class accuracy? Real images of the trained classes
(data/real-dev, 71 images, 5 sources) and real budding yeast (data/real-novel, 7) classified among a
run's trained classes + the novel stages, with and without stacking, per class and per source.

    python benchmarks/novel_real.py --run /tmp/lead/final/run --stack-budget 0.05

Rows per classifier and description set (``bank``: the run's set + the shipped novel bank; ``notes``:
+ the microscopist's notes): ``SET@trained`` is the argmax over the trained classes only (what
evaluating the run on real-dev reports), ``SET`` among all classes, ``SET+stack`` with calibrated
stacking (gamma from the run's own val images, no real image used). Writes --results."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from novel import NOVEL, REAL_NOVEL, real_predictions, split_classifier

ROOT = Path(__file__).resolve().parents[1]
REAL_DEV = ROOT / "data" / "real-dev"
RESULTS = Path(__file__).parent / "results" / "novel-real.json"


def summarise(
    classes: list[str], labels: list[int], sources: list[str], pred: list[int], trained: int
) -> dict:
    """Per true class and per source: right/total; where the real trained-class images went."""
    right = [p == y for p, y in zip(pred, labels)]

    def frac(idx: list[int]) -> dict:
        return {"right": sum(right[i] for i in idx), "n": len(idx), "recall": sum(right[i] for i in idx) / len(idx)}  # fmt: skip

    present = sorted(set(labels))
    dev = [i for i, y in enumerate(labels) if y < trained]
    return {
        "per_class": {classes[c]: frac([i for i, y in enumerate(labels) if y == c]) for c in present},
        "per_source": {s: frac([i for i, x in enumerate(sources) if x == s]) for s in sorted(set(sources))},
        "trained_accuracy": frac(dev),
        "trained_to_new": dict(Counter(classes[pred[i]] for i in dev if pred[i] >= trained)),
        "confusion": [
            [sum(labels[i] == t and pred[i] == p for i in range(len(pred))) for p in range(len(classes))]
            for t in present
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("/tmp/lead/final/run"))
    ap.add_argument("--classifiers", default="mean+stack", help="NAME or NAME+stack, comma-separated")
    ap.add_argument("--stack-budget", type=float, default=0.05)
    ap.add_argument("--work", type=Path, default=Path("/tmp/fungalzsl-novel-real"))
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    out: dict = {"run": str(args.run), "novel": NOVEL, "stack_budget": args.stack_budget, "rows": {}}
    for name in args.classifiers.split(","):
        base, budget = split_classifier(name, args.stack_budget)
        classes, labels, sources, preds, gammas = real_predictions(args.run, [REAL_DEV, REAL_NOVEL], NOVEL, args.work, base, budget)  # fmt: skip
        trained = len(classes) - len(NOVEL)
        for key, pred in preds.items():
            out["rows"][f"{base}/{key}"] = {
                **summarise(classes, labels, sources, pred, trained),
                "gamma": gammas.get(key),
            }
        out["classes"] = classes
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(out, indent=2) + "\n")
    srcs = sorted(next(iter(out["rows"].values()))["per_source"])
    print("| row | " + " | ".join(c for c in out["rows"][next(iter(out["rows"]))]["per_class"]) + " | trained (71) | " + " | ".join(srcs) + " | trained → new |")  # fmt: skip
    for key, r in out["rows"].items():
        cells = [f"{v['right']}/{v['n']}" for v in r["per_class"].values()]
        cells += [f"{r['trained_accuracy']['right']}/{r['trained_accuracy']['n']}"]
        cells += [f"{r['per_source'][s]['right']}/{r['per_source'][s]['n']}" for s in srcs]
        gamma = "" if r["gamma"] is None else f" (γ {r['gamma']:.3f})"
        print(f"| {key}{gamma} | " + " | ".join(cells) + f" | {r['trained_to_new']} |")


if __name__ == "__main__":
    main()
