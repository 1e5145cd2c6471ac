"""Held-out mycelium from captions that extrapolate past everything its loco run was trained on.

Trained without mycelium, the continuum run's captions stop at the most grown hyphae (coverage <= 19%,
branching depth <= 6); the mycelium test images lie beyond (coverage 34-51%, depth 6-7). This writes
the held-out (last) class's descriptions in the captions' own words, from the facts of the trained
neighbour's most grown training images pushed one step further by a rule fixed in advance (coverage,
segments and total length doubled, one more branching level; ``extrapolate_facts``), and scores the
finished loco run with them (the other classes keep the bank) beside the bank, with each classifier.

    python benchmarks/novel_extrapolate.py --work /tmp/novel-bench     # after benchmarks/novel.py

No image of the held-out class is used: the facts come from the training captions only."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from novel import split_classifier, stores

RESULTS = Path(__file__).parent / "results" / "novel-extrapolate.json"
TOP = 10  # the trained neighbour's most grown training images (by field coverage)


def extrapolate_facts(facts: dict) -> dict:
    """One step past ``facts`` along the growth timeline: coverage (capped at 0.95), segments and total
    length doubled, one more branching level; structures, sizes and colour kept, overlaps dropped."""
    f = {**facts, "overlap": {}}
    f.update(coverage=min(0.95, 2 * f["coverage"]), segments=2 * f["segments"],
             total_length=2 * f["total_length"], depth=f["depth"] + 1)  # fmt: skip
    return f


def extrapolated_set(data: Path, bank: Path, classes: list[str], out: Path) -> tuple[Path, list[str]]:
    """``bank`` with the last class's texts replaced by captions extrapolated from the class before it."""
    from fungalzsl.io import read_jsonl, write_jsonl
    from fungalzsl.synth.captions import captions_from_facts

    last, prev = classes[-1], classes[-2]
    rows = [r for r in read_jsonl(data / "captions.jsonl") if r["file_name"].startswith(f"train/{prev}/")]
    top = sorted(rows, key=lambda r: r["facts"]["coverage"])[-TOP:]
    texts = list(dict.fromkeys(t for r in top for t in captions_from_facts(extrapolate_facts(r["facts"]))))
    keep = [r for r in read_jsonl(bank) if r["class"] != last]
    write_jsonl(out, [*keep, *({"class": last, "text": t, "set": "extrapolated"} for t in texts)])
    return out, texts


def main() -> None:
    from fungalzsl.eval import evaluate_run

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="benchmarks/novel.py --work (its finished runs)")
    ap.add_argument("--recipe", default="continuum")
    ap.add_argument("--classifiers", default="mean,mean+stack,blend,blend+stack")
    ap.add_argument("--stack-budget", type=float, default=0.05)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    data = args.work / ("data-continuum" if "continuum" in args.recipe else "data")
    bank = args.work / "bank.jsonl"
    classes = json.loads((data / "dataset.json").read_text())["classes"]
    held = classes[-1]
    run = args.work / f"loco-{args.recipe}" / "runs" / f"without-{held}"
    path, texts = extrapolated_set(data, bank, classes, args.work / "extrapolated.jsonl")
    out: dict = {"recipe": args.recipe, "held_out": held, "texts": texts, "rows": {}}
    for name in args.classifiers.split(","):
        base, budget = split_classifier(name, args.stack_budget)
        for label, desc in (("bank", bank), ("extrapolated", path)):
            m = evaluate_run(run, data, args.work / "extrapolate-evals" / f"{label}-{name}", "test", [desc],
                             classifier=base, baseline=False, record=False, n_boot=200, figures=False,
                             stack_budget=budget, **stores())  # fmt: skip
            pc = m["per_class"]
            seen = [c for c in classes if c != held]
            out["rows"][f"{label}/{name}"] = {
                "held_out_recall": pc[held]["recall"], "ci95": pc[held].get("recall_ci95"),
                "seen_recall": sum(pc[c]["recall"] * pc[c]["support"] for c in seen) / sum(pc[c]["support"] for c in seen),
                "gamma": (m.get("stacking") or {}).get("gamma"),
                "held_out_row": m["confusion_matrix"][m["classes"].index(held)],
            }  # fmt: skip
            print(f"{label:<13} {name:<12} {held} {pc[held]['recall']:.3f}  seen {out['rows'][f'{label}/{name}']['seen_recall']:.3f}", flush=True)  # fmt: skip
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
