"""Can the zero-shot rule of a trained run do better on real images without retraining?

Scores one run (default: the output of ``fungalzsl run``) on the real development set (data/real-dev)
and on the run's own synthetic test split with variants of how an image is embedded and what it is
compared with; the class prototypes are the run's stored class embeddings (the mean of its training
descriptions), as ``fungalzsl evaluate`` uses them:

* ``centre``: the shipped rule (one centre crop at the model's input size);
* test-time augmentation, the normalised mean of normalised embeddings over views: ``d4`` (the 8
  flips / quarter turns of fungalzsl.fewshot.features.d4_views), ``flip2`` (identity + mirror),
  ``rot4`` (the 4 quarter turns), ``s288`` (one pass at 288 px), ``s224+288`` (both sizes),
  ``five0.7`` (the centre crop + 5 crops of 0.7 of the short side), ``d4+five0.7``;
* ``+centred``: the embedding minus the mean embedding of the run's synthetic *validation* images
  (never the real images' own statistics), then normalised;
* ``synthetic-centroid``: no text; the nearest class centroid of the run's synthetic validation images'
  embeddings (``w`` blends: ``(1-w)·text + w·centroid`` cosine scores); ``backbone-centroid``: the same
  on the frozen backbone features.

No real image is used to fit anything; the development set chose nothing here unless the docs say so.

    PYTHONPATH=src python benchmarks/real_zeroshot.py --run /tmp/lead/final/run
    PYTHONPATH=src python benchmarks/real_zeroshot.py --print
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "real_zeroshot.json"
TTA = ("centre", "d4", "flip2", "rot4", "s288", "s224+288")
CROPS = ("five0.7", "d4+five0.7")  # --crops: 5 more passes per image
SYNTHETIC_TTA = ("centre",)  # --synthetic-d4: also d4 on the synthetic test (8 passes per image)
BLENDS = (0.25, 0.5, 1.0)


def _prep(model: Any, size: int) -> Callable[[Image.Image], torch.Tensor]:
    """The model's own preprocessing (resize, centre crop, normalise) at another input size."""
    norm = model.preprocess.transforms[-1]
    bicubic = transforms.InterpolationMode.BICUBIC
    return transforms.Compose(
        [
            transforms.Resize(size, interpolation=bicubic),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            norm,
        ]
    )


def _five_crops(im: Image.Image, frac: float) -> list[Image.Image]:
    w, h = im.size
    c = int(min(w, h) * frac)
    corners = [((w - c) // 2, (h - c) // 2), (0, 0), (w - c, 0), (0, h - c), (w - c, h - c)]
    return [im.crop((x, y, x + c, y + c)) for x, y in corners]


@torch.no_grad()
def view_embeddings(model: Any, path: Path, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """{variant: (D,) normalised mean embedding} of one image, plus ``backbone`` (centre crop)."""
    from fungalzsl.fewshot.features import view_features
    from fungalzsl.images import load_image

    im = load_image(path)
    size = model.image_size
    # the 8 flips / quarter turns of fewshot.features (view 0: the centre crop itself); 1 pass without them
    n = 8 if any(k in names for k in ("d4", "flip2", "rot4", "d4+five0.7")) else 1
    emb, backbone = view_features(model, _prep(model, size)(im)[None], n)
    d4 = emb[0]

    def enc(xs: list[torch.Tensor]) -> torch.Tensor:
        return F.normalize(model.encode_image(torch.stack(xs)).float(), dim=-1)

    v: dict[str, torch.Tensor] = {"centre": d4[:1]}
    if n == 8:
        v.update(d4=d4, flip2=d4[[0, 4]], rot4=d4[:4])
    if any(k.startswith("s2") for k in names):
        v["s288"] = enc([_prep(model, 288)(im)])
        v["s224+288"] = torch.cat([d4[:1], v["s288"]])
    if any("five" in k for k in names):
        five = enc([_prep(model, size)(c) for c in _five_crops(im, 0.7)])
        v["five0.7"] = torch.cat([d4[:1], five])
        v["d4+five0.7"] = torch.cat([d4, five])
    out = {k: F.normalize(t.mean(0), dim=-1) for k, t in v.items() if k in names}
    out["backbone"] = backbone[0, 0]
    return out


def embed_set(model: Any, paths: list[Path], names: tuple[str, ...], what: str) -> dict[str, torch.Tensor]:
    from fungalzsl.progress import step

    rows: list[dict[str, torch.Tensor]] = []
    with step(f"{what}: {len(paths)} images", len(paths)) as bar:
        for p in paths:
            rows.append(view_embeddings(model, p, names))
            bar.advance(1)
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def centroids(x: torch.Tensor, labels: np.ndarray, k: int) -> torch.Tensor:
    return F.normalize(torch.stack([F.normalize(x[labels == c], dim=-1).mean(0) for c in range(k)]), dim=-1)


def summarise(labels: np.ndarray, scores: torch.Tensor, classes: list[str], sources: list[str] | None,
              scale: float) -> dict[str, Any]:  # fmt: skip
    from fungalzsl.eval.metrics import classification_metrics, per_source_metrics

    probs = (scale * scores).softmax(-1).double().numpy()
    m = classification_metrics(labels, probs, classes, n_boot=1000)
    out = {
        "recall@1": m["recall@1"],
        "balanced_accuracy": m["balanced_accuracy"],
        "balanced_accuracy_ci95": m["ci95"]["balanced_accuracy"],
        "per_class": {
            c: [round(v["recall"] * v["support"]), v["support"]] for c, v in m["per_class"].items()
        },
    }
    if sources is not None:
        ps = per_source_metrics(labels, probs.argmax(1), sources, classes)
        out["per_source"] = {s: [round(v["accuracy"] * v["n"]), v["n"]] for s, v in ps.items()}
    return out


def score_all(
    run: Path, real: Path, real_views: tuple[str, ...], syn_views: tuple[str, ...]
) -> dict[str, Any]:
    from fungalzsl.eval.sources import align_labels, load_labelled_set
    from fungalzsl.images import list_split
    from fungalzsl.models import load_run
    from fungalzsl.predict.zeroshot import load_class_embeddings, model_logit_scale

    model, cfg = load_run(run)
    model.eval()
    classes: list[str] = cfg["classes"]
    names, stored = load_class_embeddings(run / "class_embeddings.safetensors", classes)
    text = F.normalize(stored[[names.index(c) for c in classes]].float(), dim=-1)
    scale = model_logit_scale(model)
    data = Path(cfg["data"])
    sets = {"real": align_labels(load_labelled_set(real), classes)}
    sets["synthetic"] = align_labels(list_split(data, "test"), classes)
    val = align_labels(list_split(data, "val"), classes)
    emb = {"real": embed_set(model, sets["real"].paths, real_views, "real images"),
           "synthetic": embed_set(model, sets["synthetic"].paths, syn_views, "synthetic test"),
           "val": embed_set(model, val.paths, ("centre",), "synthetic val (centroids, mean)")}  # fmt: skip
    val_labels = np.asarray(val.labels)
    mean = F.normalize(emb["val"]["centre"], dim=-1).mean(0)
    cen = centroids(emb["val"]["centre"], val_labels, len(classes))
    bb_cen = centroids(emb["val"]["backbone"], val_labels, len(classes))
    rows: dict[str, dict[str, Any]] = {}
    for name, s in sets.items():
        e, labels = emb[name], np.asarray(s.labels)
        sources = s.sources if name == "real" else None
        variants: dict[str, torch.Tensor] = {}
        for v in real_views if name == "real" else syn_views:
            variants[v] = e[v] @ text.T
            variants[f"{v}+centred"] = F.normalize(e[v] - mean, dim=-1) @ text.T
        for w in BLENDS:
            key = "synthetic-centroid" if w == 1.0 else f"text+centroid w{w}"
            variants[key] = (1 - w) * (e["centre"] @ text.T) + w * (e["centre"] @ cen.T)
        variants["backbone-centroid"] = F.normalize(e["backbone"], dim=-1) @ bb_cen.T
        for v, sc in variants.items():
            rows.setdefault(v, {})[name] = summarise(labels, sc, classes, sources, scale)
    return {"run": str(run), "classes": classes, "n_val": len(val.paths), "load_average": os.getloadavg(),
            "variants": rows}  # fmt: skip


def table(res: dict[str, Any]) -> str:
    classes = res["classes"]
    sources = sorted(res["variants"]["centre"]["real"].get("per_source", {}))
    head = ["variant", "synthetic R@1", "real R@1", "real balanced [95% CI]", *classes, *sources]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in res["variants"].items():
        q, syn = r["real"], r.get("synthetic")
        lo, hi = q["balanced_accuracy_ci95"]
        cells = [name, f"{syn['recall@1']:.3f}" if syn else "–", f"{q['recall@1']:.3f}",
                 f"{q['balanced_accuracy']:.3f} [{lo:.2f}, {hi:.2f}]",
                 *(f"{a}/{b}" for a, b in (q["per_class"][c] for c in classes)),
                 *(f"{a}/{b}" for a, b in (q["per_source"][s] for s in sources))]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/default/run"))
    ap.add_argument("--real", type=Path, default=REPO / "data" / "real-dev")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--crops", action="store_true", help="also the five-crop views on the real set")
    ap.add_argument("--synthetic-d4", action="store_true", help="also d4 on the synthetic test (8 passes)")
    ap.add_argument("--print", action="store_true", help="print the table of --out and stop")
    args = ap.parse_args()
    if not args.print:
        from fungalzsl.io import atomic_write_json
        from fungalzsl.runtime import configure_torch_threads

        configure_torch_threads()
        real_views = TTA + (CROPS if args.crops else ())
        syn_views = SYNTHETIC_TTA + (("d4",) if args.synthetic_d4 else ())
        atomic_write_json(args.out, score_all(args.run, args.real, real_views, syn_views))
    print(table(json.loads(args.out.read_text())))


if __name__ == "__main__":
    main()
