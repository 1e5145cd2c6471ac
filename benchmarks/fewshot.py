"""Few-shot adaptation on the real development set: the three methods (Tip-Adapter, linear probe,
prototype) at k = 1, 2, 5, 10 with two image features, side by side on the same draws:

* ``run``: the fine-tuned run's image tower (and its text classifier for k = 0 and for Tip-Adapter);
* ``pretrained``: EfficientNet-Lite0's ImageNet features, untouched (the pooled 1280-d vector before any
  projection). They have no text side, so k = 0 is not defined and Tip-Adapter's zero-shot term is 0
  (a pure training-free cache).

    python benchmarks/fewshot.py --run runs/default/run --data data/real-dev

Prints a table and writes benchmarks/results/fewshot.json (+ fewshot.md). A class with fewer than k + 1
images gives all but one as shots (real-dev has 2 spore and 5 mycelium images): the table says so."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

RESULTS = Path(__file__).parent / "results" / "fewshot.json"
METHODS = ("tip", "probe", "prototype")


class PooledLite(torch.nn.Module):
    """The pretrained EfficientNet-Lite0 trunk, L2-normalised pooled features (no projection head)."""

    def __init__(self) -> None:
        super().__init__()
        from fungalzsl.models import build_model

        self.lite = build_model("lite")
        self.preprocess = self.lite.preprocess

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.lite.layer_groups()["image"])
        return F.normalize(self.lite.image_trunk(x, n).flatten(1), dim=-1)


def _protocol(name, model, items, classes, zs_fn, scale, args):
    from fungalzsl.fewshot.adapt import embed_labelled
    from fungalzsl.fewshot.protocol import run_protocol, zero_shot

    t0 = time.perf_counter()
    emb = embed_labelled(model, items, classes, f"{name} images")
    with torch.no_grad():
        zs = zs_fn(emb.emb)
    body = run_protocol(
        emb, zs, classes, scale, ks=args.k, repeats=args.repeats, methods=METHODS, seed=args.seed
    )
    body["zero_shot"] = zero_shot(emb, zs, args.seed) if name == "run" else None
    body["seconds"] = round(time.perf_counter() - t0, 1)
    return body


def _table(results: dict) -> str:
    lines = ["| features | k | shots per class | method | balanced acc. [95% CI] | accuracy | per source (bal. acc.) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, body in results["features"].items():
        zs = body.get("zero_shot")
        if zs:
            per = ", ".join(f"{s} {v['balanced_accuracy']:.2f}" for s, v in zs["per_source"].items())
            lo, hi = zs["ci95"]["balanced_accuracy"]
            lines.append(f"| {name} | 0 | 0 | zero-shot | {zs['balanced_accuracy']:.3f} [{lo:.3f}, {hi:.3f}] "
                         f"| {zs['accuracy']:.3f} | {per} |")  # fmt: skip
        for r in body["results"]:
            shots = "/".join(str(v) for v in r["shots_per_class"].values()) + (
                " capped" if r["capped"] else ""
            )
            lo, hi = r["balanced_accuracy"]["ci95"]
            per = ", ".join(f"{s} {v['balanced_accuracy']:.2f}" for s, v in r["per_source"].items())
            lines.append(f"| {name} | {r['k']} | {shots} | {r['method']} | {r['balanced_accuracy']['mean']:.3f} "
                         f"[{lo:.3f}, {hi:.3f}] | {r['accuracy']['mean']:.3f} | {per} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("runs/default/run"))
    ap.add_argument("--data", type=Path, default=Path("data/real-dev"))
    ap.add_argument("--k", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 5, 10])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    from fungalzsl.labelled import read_labelled
    from fungalzsl.predict.classifier import Classifier
    from fungalzsl.runtime import configure_torch_threads

    configure_torch_threads()
    clf = Classifier.load(args.run)
    items = read_labelled(args.data, clf.classes)
    results = {"run": str(args.run), "data": str(args.data), "ks": args.k, "repeats": args.repeats,
               "seed": args.seed, "classes": clf.classes, "features": {}}  # fmt: skip
    results["features"]["run"] = _protocol(
        "run", clf.model, items, clf.classes, clf.scores, clf.logit_scale, args
    )
    pooled = PooledLite().eval()
    results["features"]["pretrained"] = _protocol(
        "pretrained",
        pooled,
        items,
        clf.classes,
        lambda e: torch.zeros(len(e), len(clf.classes)),
        clf.logit_scale,
        args,
    )
    results["images_per_class"] = results["features"]["run"]["images_per_class"]
    table = _table(results)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(
        f"`{' '.join(['python', *sys.argv])}`\n\nimages per class: {results['images_per_class']}\n\n{table}\n"
    )
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
