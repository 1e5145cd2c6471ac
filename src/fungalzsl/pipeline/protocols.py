"""Evaluation protocols beyond the paper. They train and generate before they evaluate, so they sit
beside the pipeline rather than in ``eval`` (which only scores what exists).

- Leave-one-class-out (true zero-shot): for each class, fine-tune on the other classes only, then
  classify test images of *all* classes, the held-out one known only through its descriptions. The
  trainer has no class filter, so each run trains on a view of the data (class folders symlinked, a
  manifest listing the kept classes) and a copy of the description set without the held-out class.
- Shift robustness: generate fresh test sets with the generator's variants (random palette, grayscale,
  noise, blur, sequence mode, another seed) and report each one's Recall@1 and its drop from the
  in-distribution reference.

Both are resumable: finished runs, datasets and evaluations are reused when their files are complete."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fungalzsl.errors import fail
from fungalzsl.eval.evaluate import evaluate_run
from fungalzsl.eval.report import Block, fmt, fmt_ci, render_markdown, write_blocks
from fungalzsl.images import list_split
from fungalzsl.io import atomic_write_json, atomic_write_text, ensure_writable_dir, write_jsonl
from fungalzsl.rundir import CONFIG_FILE, LAST_DIR, resolve_run_dir
from fungalzsl.text.records import load_description_set

# name → keyword arguments of fungalzsl.synth.generate_dataset (on top of the run's own preset).
SHIFT_VARIANTS: dict[str, dict[str, Any]] = {
    "reference": {},
    "random-palette": {"palette": "random"},
    "grayscale": {"grayscale": True},
    "noise": {"noise_sd": 0.15},
    "blur": {"blur_radius": 0.01},
    "sequence": {"mode": "sequence"},
}


def class_view(data: Path, keep: Sequence[str], view: Path, splits: Sequence[str] = ("train", "val")) -> Path:
    """A dataset directory holding only ``keep`` classes: class folders symlinked, not copied."""
    for split in splits:
        for c in keep:
            src = (data / split / c).resolve()
            if not src.is_dir():
                continue
            dst = view / split / c
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_symlink() and Path(os.readlink(dst)) == src:
                continue
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            dst.symlink_to(src, target_is_directory=True)
    atomic_write_json(view / "dataset.json", {"classes": list(keep), "view_of": str(data.resolve())})
    return view


def _run_done(run: Path) -> bool:
    try:
        return json.loads((run / CONFIG_FILE).read_text()).get("status") == "done"
    except (OSError, ValueError):
        return False


def leave_one_class_out(
    data: str | Path,
    descriptions: str | Path,
    out: str | Path,
    *,
    model: str = "lite",
    config: str | Path | None = "cpu-default",
    eval_descriptions: str | Path | None = None,
    classes: Sequence[str] | None = None,
    split: str = "test",
    overrides: dict[str, Any] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    figures: bool = True,
    trainer: Callable[..., Any] | None = None,
    stack_budget: float | None = None,
    stores: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train without each class in turn and evaluate on all classes; returns the per-class table.

    ``eval_descriptions`` (default: ``descriptions``) must describe every class: it is how the held-out
    class enters the classifier. ``classes`` limits which classes are held out (default: all).
    ``trainer`` defaults to ``fungalzsl.train.loop.train_run`` (same signature). ``stack_budget``
    applies calibrated stacking as ``evaluate --stack-budget`` does (fungalzsl.eval.gzsl): each run's
    gamma comes from its own view's validation images, the held-out class absent from them. ``stores``
    (``text_store``, ``image_store``: evaluate_run's) share embeddings across the runs' evaluations:
    keyed by the towers' weights, so runs whose frozen backbones are equal share them safely."""
    from fungalzsl.eval.gzsl import check_budget

    if trainer is None:
        from fungalzsl.train.loop import train_run as trainer
    if stack_budget is not None:
        check_budget(stack_budget)  # before any training

    data, out = Path(data), ensure_writable_dir(out)
    all_classes = list_split(data, split).classes
    if len(all_classes) < 3:
        raise fail(f"{data} has {len(all_classes)} classes", "leave-one-class-out needs at least 3 classes")
    held = list(classes or all_classes)
    unknown = [c for c in held if c not in all_classes]
    if unknown:
        raise fail(f"unknown class(es) to hold out: {', '.join(unknown)}", f"use: {', '.join(all_classes)}")
    train_set = load_description_set(descriptions)
    eval_path = Path(eval_descriptions or descriptions)
    load_description_set(eval_path).require_classes(all_classes)
    rows = []
    for h in held:
        keep = [c for c in all_classes if c != h]
        view = class_view(data, keep, out / "views" / f"without-{h}")
        desc_view = out / "views" / f"without-{h}.jsonl"
        write_jsonl(desc_view, [r for r in train_set.records if r.get("class") in keep])
        run = out / "runs" / f"without-{h}"
        if not _run_done(run):
            trainer(
                view, desc_view, run, model, config, resume=(run / LAST_DIR).is_dir(), overrides=overrides
            )
        m = evaluate_run(
            run,
            data,
            out / "evals" / f"without-{h}",
            split,
            [eval_path],
            baseline=False,
            record=False,
            n_boot=n_boot,
            seed=seed,
            figures=figures,
            stack_budget=stack_budget,
            **(stores or {}),
        )
        pc = m["per_class"]
        seen_support = sum(pc[c]["support"] for c in keep)
        rows.append(
            {
                "held_out": h,
                "run": str(run),
                "recall@1": m["recall@1"],
                "ci95": m["ci95"]["recall@1"],
                "held_out_recall": pc[h]["recall"],
                "held_out_recall_ci95": pc[h].get("recall_ci95"),
                "held_out_precision": pc[h]["precision"],
                "seen_recall": sum(pc[c]["recall"] * pc[c]["support"] for c in keep) / max(1, seen_support),
                "per_class_recall": {c: pc[c]["recall"] for c in all_classes},
                "held_out_row": m["confusion_matrix"][m["classes"].index(h)],
                "gamma": (m.get("stacking") or {}).get("gamma"),
                "n": m["n"],
            }
        )
    result = {
        "protocol": "leave-one-class-out",
        "data": str(data),
        "split": split,
        "model": model,
        "train_descriptions": str(descriptions),
        "eval_descriptions": str(eval_path),
        "classes": all_classes,
        "stack_budget": stack_budget,
        "rows": rows,
    }
    columns = ["held_out", "recall@1", "held_out_recall", "held_out_precision", "seen_recall", "gamma", "n"]
    table = [[r[c] for c in columns] for r in rows]
    _write_result(out, "loco", result, loco_blocks(result), columns, table, "fungalzsl leave-one-class-out")
    return result


def loco_blocks(result: dict[str, Any]) -> list[Block]:
    classes = result["classes"]
    budget = result.get("stack_budget")
    stacking = (
        []
        if budget is None
        else [Block("p", f"Calibrated stacking, seen-class budget {budget}: each run's trained classes are "
                         "lowered by its gamma (cosine units), fitted on its own validation images.")]
    )  # fmt: skip
    gamma = [] if budget is None else ["gamma"]
    return [
        Block("h1", "Leave-one-class-out (true zero-shot)"),
        Block(
            "p",
            f"Each row: fine-tuned ({result['model']}) without one class, then evaluated on "
            f"{result['split']} images of all classes; the held-out class is known only through "
            f"its descriptions ({result['eval_descriptions']}).",
        ),
        *stacking,
        Block(
            "table",
            header=[
                "held-out class",
                "Recall@1 (all) [95% CI]",
                "held-out recall [95% CI]",
                "held-out precision",
                "seen-class recall",
                *(f"recall {c}" for c in classes),
                *gamma,
            ],
            rows=[
                [
                    r["held_out"],
                    fmt_ci(r["recall@1"], r["ci95"]),
                    fmt_ci(r["held_out_recall"], r["held_out_recall_ci95"]),
                    fmt(r["held_out_precision"]),
                    fmt(r["seen_recall"]),
                    *(fmt(r["per_class_recall"][c]) for c in classes),
                    *([fmt(r["gamma"])] if gamma else []),
                ]
                for r in result["rows"]
            ],
        ),
    ]


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows([[f"{v:.6f}" if isinstance(v, float) else v for v in r] for r in rows])
    return buf.getvalue()


def _write_result(
    out: Path,
    name: str,
    result: dict[str, Any],
    blocks: list[Block],
    columns: list[str],
    table: list[list[Any]],
    title: str,
) -> None:
    """A protocol's files: NAME.json (the result), NAME.md, NAME.csv (floats to 6 places), report.md/html."""
    atomic_write_json(out / f"{name}.json", result)
    atomic_write_text(out / f"{name}.md", render_markdown(blocks))
    atomic_write_text(out / f"{name}.csv", _csv(columns, table))
    write_blocks(out, blocks, title)


def _training_preset(run: Path) -> tuple[Any, int]:
    """The generator preset and training seed of the data a run was trained on (else the paper's)."""
    from fungalzsl.synth import GeneratorPreset, load_preset

    try:
        cfg = json.loads((run / CONFIG_FILE).read_text())
        manifest = json.loads((Path(cfg["data"]) / "dataset.json").read_text())
        preset = manifest["preset"]
        settings = preset.get("settings", preset)  # the manifest stores {name, hash, settings}
        return GeneratorPreset.model_validate(settings), int(manifest.get("seed", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return load_preset("paper"), 0


def shift_robustness(
    run: str | Path,
    out: str | Path,
    *,
    variants: Sequence[str] | None = None,
    num_images: int = 300,
    seed: int = 1000,
    descriptions: Sequence[str | Path] | None = None,
    n_boot: int = 1000,
    figures: bool = False,
    workers: int = 1,
) -> dict[str, Any]:
    """Evaluate ``run`` on freshly generated test sets, one per generator variant; report the drop.

    Every variant uses the run's training preset (size, classes, geometry) with one change and a seed
    the training data never used, so 'reference' is the in-distribution score the others drop from."""
    from fungalzsl.synth import generate_dataset, with_overrides

    run, out = resolve_run_dir(run, "shift"), ensure_writable_dir(out)
    names = list(variants or SHIFT_VARIANTS)
    bad = [v for v in names if v not in SHIFT_VARIANTS]
    if bad:
        raise fail(f"unknown shift variant(s): {', '.join(bad)}", f"choose from: {', '.join(SHIFT_VARIANTS)}")
    preset, train_seed = _training_preset(run)
    if seed == train_seed:
        raise fail(f"--seed {seed} is the training data's seed", "pick another so the test images are new")
    # All images go to one 'test' split: these sets exist only to be evaluated.
    preset = with_overrides(preset, splits={"test": 1.0}, num_images=num_images)
    rows: list[dict[str, Any]] = []
    for name in names:
        kwargs = dict(SHIFT_VARIANTS[name])
        mode = kwargs.pop("mode", "classes")
        data = out / "data" / name
        generate_dataset(
            data,
            with_overrides(preset, **kwargs),
            seed=seed,
            mode=mode,
            workers=workers,
            progress=False,
            resume=data.exists(),
        )
        m = evaluate_run(
            run,
            data,
            out / "evals" / name,
            "test",
            descriptions,
            baseline=False,
            record=False,
            n_boot=n_boot,
            figures=figures,
        )
        rows.append(
            {
                "variant": name,
                "change": kwargs or ({"mode": mode} if mode != "classes" else {}),
                "recall@1": m["recall@1"],
                "ci95": m["ci95"]["recall@1"],
                "ece": m["ece"],
                "n": m["n"],
                "per_class_recall": {c: v["recall"] for c, v in m["per_class"].items()},
            }
        )
    ref = next((r["recall@1"] for r in rows if r["variant"] == "reference"), None)
    for r in rows:
        r["drop"] = None if ref is None else ref - r["recall@1"]
    result = {
        "protocol": "shift-robustness",
        "run": str(run),
        "seed": seed,
        "num_images": num_images,
        "rows": rows,
    }
    columns = ["variant", "recall@1", "ci_low", "ci_high", "drop", "ece", "n"]
    table = [
        [r["variant"], r["recall@1"], r["ci95"][0], r["ci95"][1], r["drop"], r["ece"], r["n"]] for r in rows
    ]
    _write_result(out, "shift", result, shift_blocks(result), columns, table, "fungalzsl shift robustness")
    return result


def shift_blocks(result: dict[str, Any]) -> list[Block]:
    return [
        Block("h1", f"Shift robustness: {result['run']}"),
        Block(
            "p",
            f"{result['num_images']} freshly generated images per variant (seed {result['seed']}); "
            "drop = reference Recall@1 minus the variant's.",
        ),
        Block(
            "table",
            header=["variant", "change", "Recall@1 [95% CI]", "drop", "ECE", "n"],
            rows=[
                [
                    r["variant"],
                    json.dumps(r["change"]) if r["change"] else "–",
                    fmt_ci(r["recall@1"], r["ci95"]),
                    fmt(r["drop"]),
                    fmt(r["ece"]),
                    fmt(r["n"]),
                ]
                for r in result["rows"]
            ],
        ),
    ]
