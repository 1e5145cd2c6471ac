"""Which training recipe transfers to real images: each recipe fine-tunes ``lite`` on one small synthetic
set and is scored on the paper's synthetic test split and on the real development set (data/real-dev).

    python benchmarks/real_recipe.py                          # every recipe, 600 images at 224 px
    python benchmarks/real_recipe.py --recipes base aug-ui2   # some, merged into the JSON
    python benchmarks/real_recipe.py --num-images 300 --epochs 2 --work /tmp/rr   # a quick try

Recipes start from configs/cpu-default.yaml's ``train:`` section as it was before this benchmark chose
the current one (BASE) and change one thing each (see RECIPES);
each run also scores WiSE-FT mixes (1-α)·θ0 + α·θ1 of its weights with the start model's, which costs
evaluations only. Writes benchmarks/results/real_recipe.json (rows merged by name, kept after each
recipe, so a killed sweep keeps what it finished) and prints a table.

real-dev is small and lopsided (59 images: 37 hyphae, 13 spores, 9 mycelium; DeFungi and hyphaltips
hold most of them): one spore image moves that class's recall by 0.08. Read balanced accuracy and the minimum class recall, never hyphae alone,
and the per-source accuracies beside them. The development set is used to choose the recipe, so
its numbers are optimistic for new images."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "real_recipe.json"
ALPHAS = (0.3, 0.5, 0.7, 1.0)
AUG: dict[str, Any] = {"views": 2}  # AugmentConfig defaults (train/settings.py), 2 cached views (--views)
# Stronger views: tighter crops, more colour and hue jitter, blur and noise more often.
STRONG_AUG: dict[str, Any] = {"views": 2, "crop_scale": (0.2, 1.0), "jitter": 0.6, "hue": 0.25, "greyscale": 0.3,
                              "blur": 0.5, "blur_sigma": (0.1, 3.0), "noise": 0.5}  # fmt: skip
UI0, UI1 = {"unfreeze_max": {"image": 0, "text": 0}}, {"unfreeze_max": {"image": 1, "text": 0}}
# Every recipe starts from cpu-default's train section as it was before this sweep chose a new one
# (no augmentation, 2 image groups unfrozen, no WiSE-FT), so the rows stay comparable whatever the
# preset says now.
BASE: dict[str, Any] = {"augment": None, "unfreeze_max": {"image": 2, "text": 0}, "wise_ft_alpha": None,
                        "wise_ft_scope": "all", "wise_ft": []}  # fmt: skip
# name -> changes to BASE (None: no fine-tuning, the pretrained start);
# "style" trains on images of that generator style (--style) instead of the paper's drawings
RECIPES: dict[str, dict[str, Any] | None] = {
    "zero-shot-lite": None,
    "base": {},
    "aug-ui2": {"augment": AUG},
    "aug-ui0": {"augment": AUG, **UI0},
    "noaug-ui0": UI0,
    "aug-ui1": {"augment": AUG, **UI1},
    "mixed-aug-ui0": {"augment": AUG, "style": "mixed", **UI0},
    "mixed-aug-ui2": {"augment": AUG, "style": "mixed"},
    "mixed-ui0": {"style": "mixed", **UI0},
    # style_algorithm 5 (packed spore masses and chains, thick septate hyphae, pink stain), 59-image set
    "micrograph-aug-ui0": {"augment": AUG, "style": "micrograph", **UI0},
    "micrograph-aug-ui2": {"augment": AUG, "style": "micrograph"},
    "micrograph-strongaug-ui0": {"augment": STRONG_AUG, "style": "micrograph", **UI0},
    "mixed-strongaug-ui0": {"augment": STRONG_AUG, "style": "mixed", **UI0},
}


def summarise(m: dict[str, Any]) -> dict[str, Any]:
    """The numbers a recipe is chosen on, from classification_metrics (+ per_source)."""
    recalls = {c: v["recall"] for c, v in m["per_class"].items()}
    out = {
        "n": m["n"],
        "recall@1": m["recall@1"],
        "balanced_accuracy": m["balanced_accuracy"],
        "balanced_accuracy_ci95": m["ci95"]["balanced_accuracy"],
        "min_class_recall": min(recalls.values()),
        "per_class_recall": recalls,
        "per_class_n": {c: v["support"] for c, v in m["per_class"].items()},
        "confusion_matrix": m["confusion_matrix"],
    }
    if "per_source" in m:
        out["per_source"] = {s: {"n": v["n"], "accuracy": v["accuracy"]} for s, v in m["per_source"].items()}
    return out


class Scorer:
    """Scores a model on the synthetic test split and the real set with the same zero-shot rule as
    ``fungalzsl evaluate`` (predict.zeroshot: mean of the normalised description embeddings), the
    description set embedded through the frozen MiniLM once for every recipe: every recipe here keeps
    the text tower frozen, so only its projection differs (on a shared 2-core machine the text pass is
    most of an evaluation's cost)."""

    def __init__(self, data: Path, real: Path, desc: Path, num_images: int, size: int):
        from fungalzsl.eval.sources import align_labels, load_labelled_set
        from fungalzsl.images import list_split
        from fungalzsl.text.records import load_description_set

        test = list_split(data, "test")
        self.classes = test.classes
        self.sets = {"synthetic": test, "real": align_labels(load_labelled_set(real), self.classes)}
        self.by_class = load_description_set(desc).by_class
        self.texts = [t for c in self.classes for t in self.by_class[c]]
        self.index = {t: i for i, t in reversed(list(enumerate(self.texts)))}
        self.pooled: torch.Tensor | None = None
        self.num_images, self.size = num_images, size  # of the synthetic sets trained on

    @torch.no_grad()
    def __call__(self, model: Any) -> dict[str, dict[str, Any]]:
        from fungalzsl.eval.metrics import classification_metrics, per_source_metrics
        from fungalzsl.predict.embed import embed_images
        from fungalzsl.predict.zeroshot import class_embeddings, class_probabilities, model_logit_scale

        model.eval()
        n_text = len(model.layer_groups()["text"])
        if self.pooled is None:
            self.pooled = torch.cat([model.text_trunk(self.texts[i : i + 64], n_text)
                                     for i in range(0, len(self.texts), 64)])  # fmt: skip
        scorer = self

        class CachedText:
            def eval(self) -> CachedText:
                return self

            def encode_text(self, texts: list[str]) -> torch.Tensor:
                return model.text_head(scorer.pooled[[scorer.index[t] for t in texts]], n_text)

        cls = class_embeddings(CachedText(), self.by_class, self.classes)
        out = {}
        for name, images in self.sets.items():
            emb, kept, _ = embed_images(model, images.paths, batch_size=32)
            labels = np.asarray([images.labels[i] for i in kept])
            probs = class_probabilities(emb, cls, model_logit_scale(model)).double().numpy()
            m = classification_metrics(labels, probs, self.classes, n_boot=200)
            if images.sources is not None:
                sources = [images.sources[i] for i in kept]
                m["per_source"] = per_source_metrics(labels, probs.argmax(1), sources, self.classes)
            out[name] = summarise(m)
        return out


def prepare(work: Path, num_images: int, size: int, style: str = "paper") -> tuple[Path, Path]:
    from fungalzsl.synth.generate import generate_dataset
    from fungalzsl.text.settings import describe_from_settings

    data, desc = work / ("data" if style == "paper" else f"data-{style}"), work / "bank.jsonl"
    if not (data / "dataset.json").is_file():
        generate_dataset(data, "paper", num_images=num_images, size=size, seed=0, workers=1, overwrite=True,
                         style=None if style == "paper" else style)  # fmt: skip
    if not desc.is_file():
        describe_from_settings({"backend": "bank", "per_class": 300, "seed": 0, "set_name": "bank",
                                "classes": ["spore", "hyphae", "mycelium"]}, desc)  # fmt: skip
    return data, desc


def style_version(change: dict[str, Any]) -> dict[str, Any]:
    """The drawing code a styled recipe's training images came from (rows of older code stay apart)."""
    from fungalzsl.synth.style import STYLE_ALGORITHM

    return {"style_algorithm": STYLE_ALGORITHM} if change.get("style", "paper") != "paper" else {}


def run_recipe(name: str, change: dict[str, Any] | None, work: Path, data: Path, desc: Path,
               scorer: Scorer, epochs: int | None) -> list[dict[str, Any]]:  # fmt: skip
    """Rows for one recipe: one per WiSE-FT α (one row for the untrained start)."""
    from fungalzsl.config import load_section
    from fungalzsl.eval.evaluate import build_start_model
    from fungalzsl.eval.sources import load_source
    from fungalzsl.models import build_model
    from fungalzsl.train.evaluate import wise_ft_weights
    from fungalzsl.train.loop import train_run

    if change is None:
        torch.manual_seed(0)  # the random projection heads of cpu-default's seed
        return [{"recipe": name, "alpha": None, **scorer(build_model("lite"))}]
    change = dict(change)
    if "style" in change:  # the synthetic test stays the paper's (scorer); training images change
        data, _ = prepare(work, scorer.num_images, scorer.size, change["style"])
    cfg = {**load_section("cpu-default", "train"), **BASE, **change, "progress": False}
    cfg.pop("style", None)
    if epochs:
        cfg["epochs"] = epochs
    run = work / "runs" / name
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.perf_counter()
    summary = train_run(data, desc, run, config=cfg)
    wall = time.perf_counter() - t0
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    epoch_s = [round(r["epoch_s"], 1) for r in recs if r["type"] == "epoch"]
    source = load_source(run)
    theta1 = {k: v.clone() for k, v in source.model.state_dict().items()}
    theta0 = build_start_model(source).state_dict()
    # lite's θ0 has random projection heads: the "backbone" mix (train.wise_ft_scope: towers)
    # interpolates the towers only and keeps the trained heads and temperature.
    trained_towers = (summary["train"].get("unfreeze_max") or {}).get("image") not in (0, None)
    rows = []
    for alpha, mix in [(a, "all") for a in ALPHAS] + [(a, "backbone") for a in ALPHAS[:-1] if trained_towers]:
        scope = "towers" if mix == "backbone" else "all"
        source.model.load_state_dict(wise_ft_weights(source.model, theta0, theta1, alpha, scope))
        rows.append({
            "recipe": name, "alpha": alpha, "wise_mix": mix, "train": change,
            "train_command_wall_s": round(wall, 1), "train_wall_s": round(summary["train_wall_s"], 1),
            "epoch_s": epoch_s, "load_average": os.getloadavg(), **style_version(change), **scorer(source.model),
        })  # fmt: skip
    return rows


def _alpha(r: dict[str, Any]) -> str:
    if r["alpha"] is None:
        return "–"
    return f"{r['alpha']}" + (" (towers)" if r.get("wise_mix") == "backbone" else "")


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| recipe | WiSE α | synthetic R@1 | real R@1 | real balanced acc [95% CI] | min class recall | "
            "hyphae / mycelium / spore recall | per-source accuracy (n) | train s |")  # fmt: skip
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        s, q = r["synthetic"], r["real"]
        pc = q["per_class_recall"]
        srcs = ", ".join(f"{k} {v['accuracy']:.2f} ({v['n']})" for k, v in q.get("per_source", {}).items())
        ci = q["balanced_accuracy_ci95"]
        lines.append(
            f"| {r['recipe']} | {_alpha(r)} | {s['recall@1']:.3f} | "
            f"{q['recall@1']:.3f} | {q['balanced_accuracy']:.3f} [{ci[0]:.2f}, {ci[1]:.2f}] | "
            f"{q['min_class_recall']:.2f} | {pc.get('hyphae', 0):.2f} / {pc.get('mycelium', 0):.2f} / "
            f"{pc.get('spore', 0):.2f} | {srcs} | {r.get('train_command_wall_s', '–')} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--num-images", type=int, default=600)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=None, help="override cpu-default's epochs")
    ap.add_argument("--views", type=int, default=2, help="cached augmented views per image (augment.views)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/fungalzsl-real-recipe"))
    ap.add_argument("--real", type=Path, default=REPO / "data" / "real-dev")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--print", action="store_true", help="print the table of --out and stop")
    args = ap.parse_args()
    if args.print:
        print(table(json.loads(args.out.read_text())["rows"]))
        return
    data, desc = prepare(args.work, args.num_images, args.size)
    scorer = Scorer(data, args.real, desc, args.num_images, args.size)
    AUG["views"] = STRONG_AUG["views"] = args.views
    old = json.loads(args.out.read_text()) if args.out.is_file() else {}
    rows = [r for r in old.get("rows", []) if r["recipe"] not in args.recipes]
    for name in args.recipes:
        print(f"== {name}", flush=True)
        rows += run_recipe(name, RECIPES[name], args.work, data, desc, scorer, args.epochs)
        result = {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "load_average": os.getloadavg(), "torch": torch.__version__},
            "data": {"num_images": args.num_images, "size": args.size, "preset": "paper", "seed": 0},
            "real": str(args.real), "rows": rows,
        }  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(table([r for r in rows if r["recipe"] == name]), flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
