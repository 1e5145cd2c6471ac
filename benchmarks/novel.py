"""True zero-shot, today's recipe against the grounded-captions recipe, side by side in one process.

    python benchmarks/novel.py --work /tmp/novel-bench --num-images 900     # ~1 h on a shared 2-core CPU

For each recipe (``today``: configs/cpu-default.yaml as it is; ``grounded``: the same plus
``captions: grounded``, i.e. every image also paired with its own grounded captions; ``continuum``:
grounded, trained on ``generate --mode continuum`` data, the train images drawn along the whole growth
timeline, the same test images), each scored with every ``--classifiers`` (``mean``; ``attributes``):

* ``fungalzsl loco`` on one small paper-preset dataset (``--num-images``, 80/10/10): held-out recall
  per class and seen-class recall, scored with our bank descriptions and with the authors' Llama-2
  captions (the release's generated_captions.json, 200 per class drawn with seed 0);
* a run on all three classes: the paper's synthetic test split (Recall@1), then ``fungalzsl novel``
  (``--n`` fresh images per class, seed 1000): recall per new stage and trained-class Recall@1, with
  our descriptions (run's bank set + the shipped novel bank) and someone else's (the authors' captions
  for the trained classes + the shipped microscopist's notes for the new stages).

Finished runs are reused when the script is run again. Prints a table and writes
benchmarks/results/novel.json."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "novel.json"
RELEASE = Path("/work/shared/data/fungalzsl-release/generated_captions.json")
NOVEL = ["germinating-spore", "sporulating-mycelium", "budding-yeast"]
RECIPES = {
    "today": {},
    "grounded": {"captions": "grounded"},
    "continuum": {"captions": "grounded"},
    "lit": {"lock_text": True},
    "lit-continuum": {"captions": "grounded", "lock_text": True},
}
# Recipes trained on the growth-continuum data (generate --mode continuum) instead of the islands.
CONTINUUM = {"continuum", "lit-continuum"}
CLASSIFIERS = ("mean", "attributes")
RELEASE_PER_CLASS = 200
# A classifier name ending in STACK is scored with calibrated stacking (evaluate --stack-budget).
STACK = "+stack"
TRAINED_ONLY = "@trained"  # real_predictions: the argmax over the run's trained classes only
REAL_NOVEL = Path(__file__).resolve().parents[1] / "data" / "real-novel"
# One text and one image store for every evaluation of the benchmark (evaluate_run's text_store and
# image_store): keyed by the towers' weights, so the loco runs' frozen MiniLM embeds each text once.
STORES: dict = {}


def stores() -> dict:
    if not STORES:
        from fungalzsl.eval.imagecache import ImageStore
        from fungalzsl.eval.textcache import TextStore

        STORES.update(text_store=TextStore(), image_store=ImageStore())
    return STORES


def split_classifier(name: str, budget: float) -> tuple[str, float | None]:
    """'mean+stack' -> ('mean', budget); 'mean' -> ('mean', None)."""
    return (name[: -len(STACK)], budget) if name.endswith(STACK) else (name, None)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def prepare_continuum(root: Path, num_images: int, size: int) -> Path:
    """The same plan, seed and test images as ``prepare``'s data, train images along the timeline."""
    from fungalzsl.synth import generate_dataset
    from fungalzsl.synth.captions import write_captions

    data = root / "data-continuum"
    if not (data / "dataset.json").is_file():
        generate_dataset(data, "paper", num_images=num_images, size=size, seed=0, mode="continuum")
    if not (data / "captions.jsonl").is_file():
        write_captions(data)
    return data


def prepare(root: Path, num_images: int, size: int, release: Path) -> tuple[Path, Path, Path]:
    from fungalzsl.synth import generate_dataset
    from fungalzsl.synth.captions import write_captions
    from fungalzsl.text.generate import generate_descriptions
    from fungalzsl.text.importer import import_descriptions

    data, bank, rel = root / "data", root / "bank.jsonl", root / "release.jsonl"
    if not (data / "dataset.json").is_file():
        generate_dataset(data, "paper", num_images=num_images, size=size, seed=0)
    if not (data / "captions.jsonl").is_file():
        write_captions(data)
    if not bank.is_file():
        generate_descriptions("bank", per_class=300, out=bank, seed=0)
    full = root / "release-full.jsonl"
    if not full.is_file():
        import_descriptions(release, full, set_name="release", model="llama-2")
    if not rel.is_file():
        subsample(full, rel, RELEASE_PER_CLASS)
    return data, bank, rel


def subsample(src: Path, dst: Path, per_class: int, seed: int = 0) -> None:
    """``per_class`` records of each class, drawn with ``seed``, in file order: ~2,000 long captions per
    class would cost each evaluation minutes of text embedding on a CPU."""
    import random

    from fungalzsl.io import read_jsonl, write_jsonl

    records = read_jsonl(src)
    keep: set[int] = set()
    for c in sorted({r["class"] for r in records}):
        idx = [i for i, r in enumerate(records) if r["class"] == c]
        keep.update(random.Random(seed).sample(idx, min(per_class, len(idx))))
    write_jsonl(dst, [r for i, r in enumerate(records) if i in keep])


def other_set(root: Path, rel: Path) -> Path:
    """The authors' captions for the trained classes + the shipped microscopist's notes for new stages."""
    from fungalzsl.io import read_jsonl, write_jsonl
    from fungalzsl.text.bank import shipped_file

    path = root / "release+notes.jsonl"
    write_jsonl(path, [*read_jsonl(rel), *read_jsonl(shipped_file("novel-notes.jsonl"))])
    return path


def caption_worded_set(root: Path) -> Path:
    """New-stage descriptions in the grounded captions' own vocabulary: the captions of 20 images per
    stage drawn with seed 2000 (never the test images, seed 1000), used as plain text. If these are
    found and the bank's are not, the gap is in the wording, not in what the image tower learned."""
    from fungalzsl.io import read_jsonl, write_jsonl
    from fungalzsl.synth import generate_dataset, load_preset
    from fungalzsl.synth.captions import write_captions

    path, data = root / "caption-worded.jsonl", root / "caption-worded-data"
    if not path.is_file():
        preset = load_preset("paper").as_test_set(NOVEL)
        generate_dataset(data, preset, num_images=20 * len(NOVEL), size=64, seed=2000, progress=False)
        rows = read_jsonl(write_captions(data, progress=False))
        write_jsonl(
            path,
            [{"class": r["label"], "text": c, "set": "caption-worded"} for r in rows for c in r["captions"]],
        )
    return path


def real_predictions(
    run: Path, folders: list[Path], new: list[str], folder: Path, classifier: str, budget: float | None
) -> tuple[list[str], list[int], list[str], dict[str, list[int]]]:
    """Real labelled folders (labels.jsonl) classified among the run's classes + ``new``, with the run's
    set + the novel bank ("bank") and + the microscopist's notes ("notes"), plain and, when ``budget``
    is given, with calibrated stacking (keys ending in +stack; gamma from the run's own val images).
    Returns the classes, true labels, sources, the predicted labels per key and stacking's gammas."""
    import torch

    from fungalzsl.eval.classifier import build_classifier
    from fungalzsl.eval.gzsl import seen_mask, stack
    from fungalzsl.eval.scoring import embed_split
    from fungalzsl.eval.sources import align_labels, load_eval_images
    from fungalzsl.eval.textcache import cached_text
    from fungalzsl.models import load_run
    from fungalzsl.pipeline.novel import _sets
    from fungalzsl.text.records import load_description_set

    model, cfg = load_run(run)
    model = cached_text(model.eval(), stores()["text_store"])
    trained = list(cfg["classes"])
    classes = [*trained, *new]
    sets = [align_labels(load_eval_images(f, "test"), classes) for f in folders]
    paths = [p for s in sets for p in s.paths]
    labels = [y for s in sets for y in s.labels]
    sources = [src or f.name for f, s in zip(folders, sets) for src in (s.sources or [None] * len(s.paths))]
    emb = embed_split(model, paths, labels, classes)
    if len(emb.paths) != len(paths):
        raise SystemExit(f"unreadable real images: {emb.errors}")
    val = align_labels(load_eval_images(cfg["data"], "val"), classes)
    val_emb = embed_split(model, val.paths, val.labels, classes)
    folder.mkdir(parents=True, exist_ok=True)
    out, gammas = {}, {}
    for set_name, path in _sets(["bank", "notes"], Path(cfg["descriptions"]["path"]), trained, new, folder):
        clf = build_classifier(model, classes, classifier, load_description_set(path).by_class)
        variants = {set_name: clf}
        if budget is not None:
            mask = seen_mask(classes, trained)
            variants[set_name + STACK], info = stack(clf, val_emb.emb, val_emb.labels.tolist(), mask, budget)
            gammas[set_name + STACK] = info["gamma"]
        for key, c in variants.items():
            with torch.no_grad():
                out[key] = c.logits(emb.emb).argmax(1).tolist()
        with torch.no_grad():  # the trained classes alone: what evaluating the run on real images does
            out[set_name + TRAINED_ONLY] = clf.logits(emb.emb)[:, : len(trained)].argmax(1).tolist()
    return classes, labels, sources, out, gammas


def real_novel(run: Path, folder: Path, classifier: str, budget: float | None) -> dict:
    """data/real-novel (real budding-yeast crops) classified among the run's classes + budding-yeast
    (real_predictions): predicted counts per class."""
    classes, _labels, _sources, preds, _gammas = real_predictions(run, [REAL_NOVEL], ["budding-yeast"], folder, classifier, budget)  # fmt: skip
    yeast = classes.index("budding-yeast")
    return {
        key: {
            "n": len(pred),
            "predicted": {k: pred.count(i) for i, k in enumerate(classes)},
            "budding-yeast_recall": pred.count(yeast) / len(pred),
        }
        for key, pred in preds.items()
        if not key.endswith(TRAINED_ONLY)
    }


def diagnose(root: Path, name: str, data: Path, bank: Path) -> dict:
    """Why a held-out class is (not) found, text side, per loco run: cosine of the held-out class's
    embedding (bank, the run's own text tower) to each class's, and to the grounded captions the run
    trained on (the best single caption, and each trained class's captions on average)."""
    import torch
    import torch.nn.functional as F

    from fungalzsl.captionsfile import read_captions
    from fungalzsl.models import load_run
    from fungalzsl.predict.embed import embed_texts
    from fungalzsl.predict.zeroshot import class_embeddings
    from fungalzsl.text.records import load_description_set

    by_class = load_description_set(bank).by_class
    caps = read_captions(data)
    out = {}
    classes = sorted({f.split("/")[1] for f in caps})
    for h in classes:
        run = root / f"loco-{name}" / "runs" / f"without-{h}"
        if not (run / "config.json").is_file():
            continue
        model, _ = load_run(run)
        model.eval()
        with torch.no_grad():
            emb = class_embeddings(model, by_class, classes)
            cos = (emb @ emb.T)[classes.index(h)]
            row = {"class_cosine": {c: round(float(cos[i]), 4) for i, c in enumerate(classes)}}
            seen_caps = {c: sorted({t for f, ts in caps.items() if f.startswith(f"train/{c}/") for t in ts}) for c in classes if c != h}  # fmt: skip
            best = 0.0
            for c, texts in seen_caps.items():
                e = F.normalize(embed_texts(model, texts), dim=-1)
                sims = e @ emb[classes.index(h)]
                row[f"caption_cosine_{c}"] = round(float(sims.mean()), 4)
                best = max(best, float(sims.max()))
            row["best_caption_cosine"] = round(best, 4)
        out[h] = row
    return out


def novel_rows(res: dict) -> dict:
    return {
        r["set"]: {
            "per_stage": {c: {"recall": r["per_class"][c]["recall"], "ci95": r["per_class"][c]["ci95"]} for c in NOVEL},
            "trained_recall@1": r["trained_recall@1"],
            "trained_ci95": r["trained_ci95"],
            "confusion_matrix": r["confusion_matrix"],
        }
        for r in res["rows"]
    }  # fmt: skip


def loco_rows(result: dict) -> dict:
    return {
        r["held_out"]: {
            "held_out_recall": r["held_out_recall"],
            "ci95": r["held_out_recall_ci95"],
            "seen_recall": r["seen_recall"],
            "recall@1": r["recall@1"],
            **{k: r[k] for k in ("gamma", "held_out_row") if k in r},
        }
        for r in result["rows"]
    }


def bench_recipe(
    name: str,
    overrides: dict,
    root: Path,
    data: Path,
    bank: Path,
    rel: Path,
    n: int,
    classifiers: tuple[str, ...] = CLASSIFIERS,
    caption_worded: bool = False,
    do_loco: bool = True,
    budget: float = 0.05,
) -> dict:
    from fungalzsl.eval import evaluate_run
    from fungalzsl.pipeline.novel import novel_stages
    from fungalzsl.pipeline.protocols import leave_one_class_out
    from fungalzsl.train.loop import train_run

    out: dict = {"overrides": overrides}
    t0 = time.perf_counter()
    if do_loco:
        log(f"{name}: loco")
        loco = leave_one_class_out(
            data,
            bank,
            root / f"loco-{name}",
            overrides=overrides or None,
            n_boot=200,
            figures=False,
            stores=stores(),
        )
        out["loco_bank"] = loco_rows(loco)
        for h, row in out["loco_bank"].items():  # where the held-out images went (the default eval)
            m = json.loads((root / f"loco-{name}" / "evals" / f"without-{h}" / "metrics.json").read_text())
            row["held_out_row"] = m["confusion_matrix"][m["classes"].index(h)]
        for clf in classifiers:
            base, stack = split_classifier(clf, budget)
            for label, path in (("bank", bank), ("release", rel)):
                if clf == "mean" and label == "bank":
                    continue
                rows = []
                for h in loco["classes"]:
                    m = evaluate_run(root / f"loco-{name}" / "runs" / f"without-{h}", data, root / f"loco-{name}" / f"evals-{label}-{clf}" / h,
                                     "test", [path], classifier=base, baseline=False, record=False, n_boot=200, figures=False,
                                     stack_budget=stack, **stores())  # fmt: skip
                    keep = [c for c in loco["classes"] if c != h]
                    pc = m["per_class"]
                    rows.append({"held_out": h, "held_out_recall": pc[h]["recall"], "held_out_recall_ci95": pc[h].get("recall_ci95"),
                                 "seen_recall": sum(pc[c]["recall"] * pc[c]["support"] for c in keep) / max(1, sum(pc[c]["support"] for c in keep)),
                                 "recall@1": m["recall@1"], "gamma": (m.get("stacking") or {}).get("gamma"),
                                 "held_out_row": m["confusion_matrix"][m["classes"].index(h)]})  # fmt: skip
                out["loco_" + label + ("" if clf == "mean" else f"_{clf}")] = loco_rows({"rows": rows})
    log(f"{name}: full run")
    run = root / f"run-{name}"
    if (
        not (run / "config.json").is_file()
        or json.loads((run / "config.json").read_text()).get("status") != "done"
    ):
        train_run(
            data,
            bank,
            run,
            "lite",
            "cpu-default",
            resume=(run / "last").is_dir(),
            overrides=overrides or None,
        )
    m = evaluate_run(
        run,
        data,
        root / f"eval-{name}",
        "test",
        None,
        baseline=False,
        record=False,
        n_boot=200,
        figures=False,
        **stores(),
    )
    out["paper_test"] = {"recall@1": m["recall@1"], "ci95": m["ci95"]["recall@1"], "n": m["n"]}
    log(f"{name}: novel")
    out["novel"] = {}
    out["real_novel"] = {}
    for clf in classifiers:
        sfx = "" if clf == "mean" else f"-{clf}"
        base, stack = split_classifier(clf, budget)
        res = novel_stages(run, root / f"novel-{name}{sfx}", NOVEL, n=n, descriptions=["bank", str(other_set(root, rel))],
                           n_boot=200, classifier=base, stack_budget=stack, stores=stores())  # fmt: skip
        out["novel"].update({k + sfx: v for k, v in novel_rows(res).items()})
        bsfx = "" if base == "mean" else f"-{base}"  # real_novel scores both, plain and stacked
        out["real_novel"].update(
            {k + bsfx: v for k, v in real_novel(run, root / f"real-novel-{name}", base, stack).items()}
        )
    if caption_worded:
        cap = novel_stages(run, root / f"novel-{name}-caption-worded", NOVEL, n=n,
                           descriptions=[str(caption_worded_set(root))], n_boot=200)  # fmt: skip
        out["novel"].update(novel_rows(cap))
    if do_loco:
        out["diagnosis"] = diagnose(root, name, data, bank)
    out["classes"] = res["classes"]
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def table(results: dict) -> str:
    lines = [
        "| recipe | measure | set | spore | hyphae | mycelium | seen/trained |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results["recipes"].items():
        for key in [k for k in r if k.startswith("loco_")]:  # recipes run with --no-loco have none
            rows, label = r[key], key[len("loco_") :]
            seen = min(v["seen_recall"] for v in rows.values())
            lines.append(
                f"| {name} | loco held-out recall | {label} | "
                + " | ".join(f"{rows[c]['held_out_recall']:.3f}" for c in ("spore", "hyphae", "mycelium"))
                + f" | min seen {seen:.3f} |"
            )
    lines += [
        "",
        "| recipe | set | " + " | ".join(NOVEL) + " | trained Recall@1 | paper test Recall@1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results["recipes"].items():
        for s, v in r["novel"].items():
            lines.append(
                f"| {name} | {s} | "
                + " | ".join(f"{v['per_stage'][c]['recall']:.3f}" for c in NOVEL)
                + f" | {v['trained_recall@1']:.3f} | {r['paper_test']['recall@1']:.3f} |"
            )
    lines += ["", "| recipe | classifier, set | real budding-yeast predicted as |", "|---|---|---|"]
    for name, r in results["recipes"].items():
        for s, v in r.get("real_novel", {}).items():
            lines.append(
                f"| {name} | {s} | " + ", ".join(f"{c} {k}" for c, k in v["predicted"].items()) + " |"
            )
    return "\n".join(lines)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/fungalzsl-novel-bench"))
    ap.add_argument("--num-images", type=int, default=900)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--n", type=int, default=60, help="novel: fresh images per class")
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--release", type=Path, default=RELEASE)
    ap.add_argument(
        "--classifiers",
        default=",".join(CLASSIFIERS),
        help=f"evaluate --classifier values; NAME{STACK} adds calibrated stacking (--stack-budget)",
    )
    ap.add_argument("--stack-budget", type=float, default=0.05, help="budget of the NAME+stack classifiers")  # fmt: skip
    ap.add_argument("--caption-worded", action="store_true", help="also score the caption-worded stage set")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--no-loco", action="store_true", help="skip leave-one-class-out (full run + novel only)")
    ap.add_argument(
        "--append", action="store_true", help="add the recipes to --results instead of replacing it"
    )
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    data, bank, rel = prepare(args.work, args.num_images, args.size, args.release)
    results = {
        "num_images": args.num_images,
        "size": args.size,
        "n_novel": args.n,
        "config": "cpu-default",
        "recipes": {},
    }
    if args.append and args.results.is_file():
        results = json.loads(args.results.read_text())
    for name in args.recipes.split(","):
        d = prepare_continuum(args.work, args.num_images, args.size) if name in CONTINUUM else data
        results["recipes"][name] = bench_recipe(name, RECIPES[name], args.work, d, bank, rel, args.n,
                                                tuple(args.classifiers.split(",")), args.caption_worded, not args.no_loco, args.stack_budget)  # fmt: skip
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=2) + "\n")
        log(f"{name} done in {results['recipes'][name]['seconds']} s")
    print(table(results))


if __name__ == "__main__":
    main()
