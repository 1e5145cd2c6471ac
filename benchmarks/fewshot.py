"""Few-shot adaptation on labelled real (or any) images: every method at k = 1, 2, 5, 10 on three image
features and two test-time views, side by side on the same draws (:mod:`fungalzsl.fewshot.protocol`):

* features ``run``: the fine-tuned run's image embedding (its text classifier gives zero-shot, Tip-Adapter's
  zero-shot term and the anchored prototypes' text); ``pretrained``: EfficientNet-Lite0's ImageNet pooled
  1280-d vector, untouched (no text side: no zero-shot, Tip-Adapter is a pure cache, no anchored); ``both``:
  the two L2-normalised and concatenated (zero-shot and Tip-Adapter's text term from the run);
* views ``none``: the centre crop as ``fungalzsl predict`` sees it; ``d8``: the mean of the normalised
  embeddings of its 8 flips / 90-degree rotations (shots and queries alike; micrographs have no "up");
* methods: those of ``fungalzsl adapt`` (tip, probe, prototype, anchored), ``zeroshot`` (the run's text
  classifier on the same query images: the paired reference) and two explored arms that are not adapters:
  ``centred`` (prototypes after subtracting the mean of the class means of the shots, SimpleShot-style)
  and ``blend`` (zero-shot logits + λ · prototype logits, λ in BLEND_GRID by leave-one-out on the shots
  of classes with ≥ 2 shots, ties to the lower held-out cross-entropy; λ = 1 when nothing can be left out).

    python benchmarks/fewshot.py --run runs/default/run --data data/real-dev
    python benchmarks/fewshot.py --run runs/default/run --data OTHER --out benchmarks/results/fewshot_other.json

Prints a table and writes the JSON (default benchmarks/results/fewshot.json) and a .md beside it. A class
with fewer than k + 1 images gives all but one as shots (real-dev has 2 spore and 5 mycelium images)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

RESULTS = Path(__file__).parent / "results" / "fewshot.json"
ADAPTERS = ("tip", "probe", "prototype", "anchored")
BLEND_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
# which methods each feature set can run (text needs the run's space)
METHODS = {
    "run": ("zeroshot", *ADAPTERS, "centred", "blend"),
    "pretrained": ("tip", "probe", "prototype", "centred"),
    "both": ("zeroshot", "tip", "probe", "prototype", "centred", "blend"),
}


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


@torch.no_grad()
def embed_views(model: torch.nn.Module, items) -> torch.Tensor:
    """(N, 8, D) normalised embeddings of each image's centre crop under the 8 flips / rotations."""
    from fungalzsl.images import load_image

    model.eval()
    out = []
    for it in items:
        x = model.preprocess(load_image(it.path))
        views = torch.stack([torch.rot90(v, k, (1, 2)) for v in (x, x.flip(2)) for k in range(4)])
        out.append(F.normalize(model.encode_image(views).float(), dim=-1))
    return torch.stack(out)


def _centred(xs, ys, xq, c, scale):
    from fungalzsl.fewshot import methods as m

    mu = torch.stack([xs[ys == k].mean(0) for k in range(c)]).mean(0)
    xs, xq = F.normalize(xs - mu, dim=-1), F.normalize(xq - mu, dim=-1)
    return m.prototype_logits(xq, m.prototypes(xs, ys, c), scale)


def _blend(xs, ys, xq, zs_s, zs_q, c, scale):
    from fungalzsl.fewshot import methods as m

    counts = torch.bincount(ys, minlength=c)
    held = [i for i in range(len(ys)) if counts[ys[i]] >= 2]
    lam = 1.0
    if held:
        loo = []
        for i in held:
            keep = torch.arange(len(ys)) != i
            loo.append(m.prototype_logits(xs[i : i + 1], m.prototypes(xs[keep], ys[keep], c), scale)[0])
        loo, hy = torch.stack(loo), ys[held]
        ranks = [m._rank(hy, zs_s[held] + g * loo) for g in BLEND_GRID]
        lam = BLEND_GRID[max(range(len(BLEND_GRID)), key=lambda j: (ranks[j], -j))]
    return zs_q + lam * m.prototype_logits(xq, m.prototypes(xs, ys, c), scale), lam


def _explored(method, emb, zs, classes, scale, args):
    """centred / blend over the same draws as run_protocol (rows in its format)."""
    from fungalzsl.fewshot.protocol import draw, scores, shots_per_class, t_interval

    y, src, c = emb.labels.numpy(), np.asarray(emb.sources), len(classes)
    counts = {n: int((y == i).sum()) for i, n in enumerate(classes)}
    rows = []
    for k in args.k:
        shots = shots_per_class(counts, k)
        got, params = [], []
        for r in range(args.repeats):
            d = draw(y, [shots[n] for n in classes], args.seed, k, r)
            xs, ys, xq = emb.emb[d.shots], emb.labels[d.shots], emb.emb[d.query]
            if method == "centred":
                logits, p = _centred(xs, ys, xq, c, scale), {}
            else:
                logits, lam = _blend(xs, ys, xq, zs[d.shots], zs[d.query], c, scale)
                p = {"lambda": lam}
            got.append(scores(y[d.query], logits.argmax(-1).numpy(), src[d.query]))
            params.append(p)
        bal = [g["balanced_accuracy"] for g in got]
        acc = [g["accuracy"] for g in got]
        per = {s: {"balanced_accuracy": float(np.mean([g["per_source"][s]["balanced_accuracy"]
                                                        for g in got if s in g["per_source"]]))}
               for s in sorted(set(src.tolist()))}  # fmt: skip
        rows.append({"k": k, "method": method, "shots_per_class": shots, "capped": any(n < k for n in shots.values()),
                     "balanced_accuracy": {"mean": float(np.mean(bal)), "ci95": t_interval(bal), "values": bal},
                     "accuracy": {"mean": float(np.mean(acc)), "ci95": t_interval(acc), "values": acc},
                     "per_source": per, "params": params})  # fmt: skip
    return rows


def _arm(name, x, items, labels, zs, clf, args):
    from fungalzsl.fewshot.adapt import EmbeddedShots
    from fungalzsl.fewshot.protocol import run_protocol

    emb = EmbeddedShots(list(items), x, labels, [i.source for i in items])
    methods = METHODS[name]
    text = clf.class_embeddings.float() if name == "run" else None
    body = run_protocol(emb, zs, clf.classes, clf.logit_scale, ks=args.k, repeats=args.repeats,
                        methods=[m for m in methods if m in ("zeroshot", *ADAPTERS)], seed=args.seed,
                        class_embeddings=text)  # fmt: skip
    extra = [
        r
        for m in methods
        if m in ("centred", "blend")
        for r in _explored(m, emb, zs, clf.classes, clf.logit_scale, args)
    ]
    order = {m: i for i, m in enumerate(methods)}
    body["results"] = sorted(body["results"] + extra, key=lambda r: (r["k"], order[r["method"]]))
    return body


def _table(results: dict) -> str:
    lines = ["| features | views | k | shots per class | method | balanced acc. [95% CI] | accuracy | per source (bal. acc.) |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for arm, body in results["arms"].items():
        name, views = arm.split("/")
        for r in body["results"]:
            shots = "/".join(str(v) for v in r["shots_per_class"].values()) + (
                " capped" if r["capped"] else ""
            )
            lo, hi = r["balanced_accuracy"]["ci95"]
            per = ", ".join(f"{s} {v['balanced_accuracy']:.2f}" for s, v in r["per_source"].items())
            lines.append(f"| {name} | {views} | {r['k']} | {shots} | {r['method']} | {r['balanced_accuracy']['mean']:.3f} "
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
    t0 = time.perf_counter()
    clf = Classifier.load(args.run)
    items = read_labelled(args.data, clf.classes)
    labels = torch.tensor([clf.classes.index(i.label) for i in items], dtype=torch.long)
    views = {"run": embed_views(clf.model, items), "pretrained": embed_views(PooledLite(), items)}
    results = {"run": str(args.run), "data": str(args.data), "ks": args.k, "repeats": args.repeats,
               "seed": args.seed, "classes": clf.classes, "arms": {}}  # fmt: skip
    for tta in ("none", "d8"):
        feats = {n: (v[:, 0] if tta == "none" else F.normalize(v.mean(1), dim=-1)) for n, v in views.items()}
        feats["both"] = F.normalize(torch.cat([feats["run"], feats["pretrained"]], 1), dim=-1)
        with torch.no_grad():
            zs = clf.scores(feats["run"])
        for name, x in feats.items():
            arm_zs = torch.zeros_like(zs) if name == "pretrained" else zs
            results["arms"][f"{name}/{tta}"] = _arm(name, x, items, labels, arm_zs, clf, args)
    results["images_per_class"] = {c: int((labels == i).sum()) for i, c in enumerate(clf.classes)}
    results["seconds"] = round(time.perf_counter() - t0, 1)
    table = _table(results)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(
        f"`{' '.join(['python', *sys.argv])}`\n\nimages per class: {results['images_per_class']}\n\n{table}\n"
    )
    print(f"wrote {args.out} and {args.out.with_suffix('.md')} ({results['seconds']} s)")


if __name__ == "__main__":
    main()
