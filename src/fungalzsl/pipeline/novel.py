"""The novel-stages protocol (``fungalzsl novel``): true zero-shot on growth stages a run never saw.

Fresh test images of the run's trained classes and of the requested test-only stages (synth.stages,
``test_only: true`` in the preset) are drawn with the run's training preset (its style, size and
geometry) and a seed its data never used; each image is classified among trained + new classes with
class embeddings built from descriptions only. Per description set: per-class recall with 95%
bootstrap CIs, the confusion matrix, and the trained classes' Recall@1 in the same classification.

Description sets: ``bank`` (default) is the run's training set for the trained classes plus the
shipped visible-attribute bank (text/banks/novel.yaml) for the new ones; ``notes`` the same with the
shipped microscopist's notes (text/banks/novel-notes.jsonl) for the new ones; a JSONL path gives its
own texts for the classes it names, the run's training set filling in the trained classes it lacks.
The output folder is written whole or not at all (fungalzsl.outdir)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fungalzsl.errors import fail
from fungalzsl.eval.attributes import BLEND_WEIGHT, check_blend_weight
from fungalzsl.eval.evaluate import evaluate_run
from fungalzsl.eval.metrics import bootstrap_ci
from fungalzsl.eval.report import Block, fmt, fmt_ci
from fungalzsl.io import write_jsonl
from fungalzsl.outdir import staged_dir
from fungalzsl.pipeline.protocols import _training_preset, _write_result
from fungalzsl.rundir import CONFIG_FILE, resolve_run_dir
from fungalzsl.text.records import load_description_set

NOVEL_FILES = (
    "data/",
    "descriptions/",
    "evals/",
    "novel.json",
    "novel.md",
    "novel.csv",
    "report.md",
    "report.html",
)
SHIPPED_SETS = ("bank", "notes")
BANK_PER_CLASS = 100


def _stage_specs(preset: Any, classes: Sequence[str], trained: list[str]) -> Any:
    """The training preset with ``trained`` + ``classes`` as its classes (every image in ``test``);
    the stages come from the training preset's test-only classes, else from the shipped paper preset's."""
    from fungalzsl.synth import GeneratorPreset, load_preset

    shipped = load_preset("paper")
    pool = {c.name: c for c in [*shipped.test_only, *preset.test_only]}
    known = [c for c in trained if c in preset.class_names]
    if not classes:
        raise fail("--classes is empty", f"name test-only stages, e.g. {','.join(pool)}")
    again = [c for c in classes if c in trained]
    unknown = [c for c in classes if c not in pool and c not in again]
    if again:
        raise fail(
            f"{', '.join(again)}: already trained classes of this run", "name stages the run never saw"
        )
    if unknown:
        raise fail(
            f"unknown stage(s): {', '.join(unknown)}", f"the preset's test-only stages are: {', '.join(pool)}"
        )
    if len(set(classes)) != len(classes):
        raise fail("--classes names a stage twice", "name each stage once")
    data = preset.to_dict()
    data["classes"] += [
        {**pool[c].model_dump(mode="json", by_alias=True), "test_only": True} for c in classes
    ]
    return GeneratorPreset.model_validate(data).as_test_set([*known, *classes])


def _sets(
    names: Sequence[str], trained_path: Path, trained: list[str], novel: list[str], folder: Path
) -> list[tuple[str, Path]]:
    """(name, JSONL path) of each description set to score, written into ``folder``."""
    from fungalzsl.text.bank import compose_set, load_bank, shipped_file

    base = [r for r in load_description_set(trained_path).records if r.get("class") in trained]
    out = []
    for name in names:
        if name == "bank":
            extra = compose_set(load_bank("novel"), novel, BANK_PER_CLASS, set_name="novel-bank")
        elif name == "notes":
            extra = load_description_set(shipped_file("novel-notes.jsonl")).records
        else:
            extra = load_description_set(name).records
        mine = [r for r in extra if r.get("class") in [*trained, *novel]]
        have = {r["class"] for r in mine}
        missing = [c for c in novel if c not in have]
        if missing:
            raise fail(
                f"description set {name} does not describe {', '.join(missing)}",
                "add texts for every new stage",
            )
        records = [*(r for r in base if r["class"] not in have), *mine]
        label = name if name in SHIPPED_SETS else Path(name).stem
        path = folder / f"{label}.jsonl"
        write_jsonl(path, records)
        out.append((label, path))
    return out


def _row(
    set_name: str, m: dict[str, Any], classes: list[str], trained: list[str], n_boot: int, seed: int
) -> dict:
    cm = np.array(m["confusion_matrix"])
    t = [classes.index(c) for c in trained]
    correct = np.concatenate([np.r_[np.ones(cm[i, i]), np.zeros(cm[i].sum() - cm[i, i])] for i in t])
    per = m["per_class"]
    return {
        "set": set_name,
        "recall@1": m["recall@1"],
        "ci95": m["ci95"]["recall@1"],
        "trained_recall@1": float(correct.mean()) if correct.size else float("nan"),
        "trained_ci95": list(bootstrap_ci(lambda ix: correct[ix].mean(), correct.size, n_boot, seed)),
        "per_class": {c: {"recall": per[c]["recall"], "ci95": per[c].get("recall_ci95"), "support": per[c]["support"]} for c in classes},
        "confusion_matrix": m["confusion_matrix"],
    }  # fmt: skip


def novel_stages(
    run: str | Path,
    out: str | Path,
    classes: Sequence[str],
    *,
    n: int = 60,
    descriptions: Sequence[str | Path] = ("bank",),
    seed: int = 1000,
    n_boot: int = 1000,
    progress: bool = True,
    model: Any = None,
    classifier: str = "mean",
    stack_budget: float | None = None,
    blend_weight: float = BLEND_WEIGHT,
    stores: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the protocol (see the module docstring); returns what ``OUT/novel.json`` holds. ``model``
    (a model object) scores in place of the run's weights; the run still names classes, set and data.
    ``classifier``, ``stack_budget`` (calibrated stacking, eval.gzsl) and ``blend_weight`` are evaluate's; ``stores`` (``text_store``, ``image_store``) its shared embedding stores."""
    from fungalzsl.synth import generate_dataset

    run = resolve_run_dir(run, "novel")
    cfg = json.loads((run / CONFIG_FILE).read_text())
    trained = list(cfg["classes"])
    preset, train_seed = _training_preset(run)
    if seed == train_seed:
        raise fail(f"--seed {seed} is the training data's seed", "pick another so the test images are new")
    if n < 1:
        raise fail(f"--n {n}: need at least one image per class", "use e.g. --n 60")
    check_blend_weight(blend_weight)
    test_preset = _stage_specs(preset, list(classes), trained)
    all_classes = test_preset.class_names
    with staged_dir(out, NOVEL_FILES, "a novel-stages run") as stage:
        sets = _sets(
            [str(d) for d in descriptions],
            Path(cfg["descriptions"]["path"]),
            trained,
            list(classes),
            stage / "descriptions",
        )
        data = stage / "data"
        generate_dataset(data, test_preset, num_images=n * len(all_classes), seed=seed, progress=progress)
        rows = []
        for name, path in sets:
            m = evaluate_run(model or run, data, stage / "evals" / name, "test", [path], classifier=classifier, baseline=False, record=False, n_boot=n_boot, seed=seed, figures=False, stack_budget=stack_budget, blend_weight=blend_weight, **(stores or {}))  # fmt: skip
            row = _row(name, m, all_classes, trained, n_boot, seed)
            if "stacking" in m:
                row["stacking"] = m["stacking"]
            rows.append(row)
        result = {
            "protocol": "novel-stages", "run": str(run), "trained": trained, "novel": list(classes),
            "classes": all_classes, "n_per_class": n, "seed": seed, "classifier": classifier, "stack_budget": stack_budget, "blend_weight": blend_weight if classifier == "blend" else None, "style": preset.variation.style, "rows": rows,
        }  # fmt: skip
        columns = ["set", "class", "recall", "ci_low", "ci_high", "support"]
        table = [
            [r["set"], c, v["recall"], *(v["ci95"] or [None, None]), v["support"]]
            for r in rows
            for c, v in r["per_class"].items()
        ]
        _write_result(stage, "novel", result, novel_blocks(result), columns, table, "fungalzsl novel stages")
    return result


def novel_blocks(result: dict[str, Any]) -> list[Block]:
    classes, novel = result["classes"], result["novel"]
    blocks = [
        Block("h1", "Novel stages (true zero-shot)"),
        Block(
            "p",
            f"{result['n_per_class']} fresh test images per class (seed {result['seed']}, the run's "
            f"training preset), classified among {len(classes)} classes from descriptions only; "
            f"new stages: {', '.join(novel)}. Run: {result['run']}.",
        ),
        Block(
            "table",
            header=["description set", *(f"{c} recall [95% CI]" for c in novel), "trained Recall@1 [95% CI]", "Recall@1 (all)"],
            rows=[
                [r["set"], *(fmt_ci(r["per_class"][c]["recall"], r["per_class"][c]["ci95"]) for c in novel),
                 fmt_ci(r["trained_recall@1"], r["trained_ci95"]), fmt_ci(r["recall@1"], r["ci95"])]
                for r in result["rows"]
            ],
        ),
    ]  # fmt: skip
    for r in result["rows"]:
        blocks.append(Block("h2", f"Confusion matrix ({r['set']}): rows true, columns predicted"))
        blocks.append(
            Block(
                "table",
                header=["true \\ predicted", *classes],
                rows=[[c, *(fmt(v) for v in row)] for c, row in zip(classes, r["confusion_matrix"])],
            )
        )
    return blocks
