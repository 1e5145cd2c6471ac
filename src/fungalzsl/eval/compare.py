"""``fungalzsl compare``: one model, several description sets — the paper's Figure 4 and the
cross-description transfer protocol (train with one set, test with sets the model never saw).

Images are embedded once; each set only costs a text-encoder pass. Writes comparison.json (full metrics
per set), comparison.md / .csv (Recall@1 with 95% CI, per-class recall) and report.md/.html."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fungalzsl.eval.classifier import DEFAULT_TEMPLATE
from fungalzsl.eval.report import Block, fmt, fmt_ci, write_blocks
from fungalzsl.eval.scoring import Scored, embed_split, score_sets
from fungalzsl.eval.sources import align_labels, dataset_classes, load_eval_images, load_source
from fungalzsl.eval.textcache import TextStore, cached_text
from fungalzsl.io import atomic_write_json, atomic_write_text
from fungalzsl.outdir import staged_dir
from fungalzsl.text.records import load_description_set


def compare_sets(
    run_or_spec: Any,
    data: str | Path,
    descriptions: Sequence[str | Path],
    out: str | Path,
    *,
    split: str | None = "test",
    classifier: str = "mean",
    images: str | Path | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "cpu",
    figures: bool = True,
) -> dict[str, Any]:
    """Score ``run_or_spec`` on ``data`` with each description set; returns the comparison dict.

    ``out`` is written whole or not at all (fungalzsl.outdir.staged_dir), as by ``evaluate``."""
    with staged_dir(out, COMPARISON_FILES, "a comparison") as stage:
        result, scored, labels = score_comparison(
            run_or_spec, data, descriptions, split=split, classifier=classifier, images=images,
            n_boot=n_boot, seed=seed, batch_size=batch_size, device=device,
        )  # fmt: skip
        write_comparison(stage, result, [(s.name, s.probs, labels) for s in scored], figures)
    return result


def score_comparison(
    run_or_spec: Any,
    data: str | Path,
    descriptions: Sequence[str | Path],
    *,
    split: str | None,
    classifier: str,
    images: str | Path | None,
    n_boot: int,
    seed: int,
    batch_size: int,
    device: str,
) -> tuple[dict[str, Any], list[Scored], np.ndarray]:
    """The comparison dict, each set's scores and the labels of the images they scored."""
    sets = [load_description_set(p) for p in descriptions]
    names = [s.name for s in sets]
    # Two files may carry the same set name (two imports of one LLM); keep columns distinct.
    for s in sets:
        if names.count(s.name) > 1:
            s.name = f"{s.name} ({Path(str(s.path)).name})"
    source = load_source(run_or_spec, device=device)
    found = load_eval_images(data, split, images)
    classes = dataset_classes(data, found)
    found = align_labels(found, classes)
    emb = embed_split(source.model, found.paths, found.labels, classes, batch_size)
    scored = score_sets(
        cached_text(source.model, TextStore()),  # a set's retrieval texts are among its class texts
        emb,
        list(sets),
        classifier=classifier,
        stored=None,
        n_boot=n_boot,
        seed=seed,
        hierarchy=None,
        template=DEFAULT_TEMPLATE,
        max_retrieval_texts=600,
    )
    trained_hash = (
        (source.config.get("descriptions") or {})
        if isinstance(source.config.get("descriptions"), dict)
        else {}
    ).get("hash")
    result: dict[str, Any] = {
        "model": str(source.run_dir or source.label),
        "data": str(data),
        "split": split,
        "classes": classes,
        "classifier": classifier,
        "n": len(emb.labels),
        "sets": [
            {
                "name": s.name,
                "path": str(ds.path),
                "hash": ds.hash,
                "seen_in_training": bool(trained_hash) and trained_hash == ds.hash,
                "recall@1": s.metrics["recall@1"],
                "ci95": s.metrics["ci95"]["recall@1"],
                "balanced_accuracy": s.metrics["balanced_accuracy"],
                "ece": s.metrics["ece"],
                "per_class_recall": {c: s.metrics["per_class"][c]["recall"] for c in classes},
                "metrics": s.metrics,
            }
            for s, ds in zip(scored, sets)
        ],
    }
    return result, scored, emb.labels


# Everything a comparison writes into --out; a folder holding anything else is not replaced.
COMPARISON_FILES = ("comparison.json", "comparison.csv", "comparison.md", "report.md", "report.html",
                    "figures/", "figures/*.png")  # fmt: skip


def write_comparison(
    out: Path, result: dict[str, Any], probs: list[tuple[str, np.ndarray, np.ndarray]], figures: bool
) -> None:
    """comparison.json/.csv/.md, the Figure 4 plot of ``probs`` (name, probabilities, labels per set)
    and report.md/.html, into ``out``."""
    classes = result["classes"]
    atomic_write_json(out / "comparison.json", result)
    atomic_write_text(out / "comparison.csv", comparison_csv(result))
    blocks = comparison_blocks(result)
    atomic_write_text(
        out / "comparison.md",
        "\n".join(
            [
                "| "
                + " | ".join(b.header)
                + " |\n|"
                + "|".join(" --- " for _ in b.header)
                + "|\n"
                + "\n".join("| " + " | ".join(r) + " |" for r in b.rows)
                for b in blocks
                if b.kind == "table"
            ]
        )
        + "\n",
    )
    if figures:
        from fungalzsl.eval.plots import plot_probability_distributions

        fig = plot_probability_distributions(probs, classes, out / "figures" / "probabilities.png")
        blocks.append(
            Block(
                "figure",
                str(fig.path.relative_to(out)),
                header=["Figure 4 style: predicted probabilities per true class, per set"],
            )
        )
    write_blocks(out, blocks, f"fungalzsl compare: {result['model']}")
    return result


def comparison_blocks(result: dict[str, Any]) -> list[Block]:
    classes = result["classes"]
    return [
        Block("h1", f"Description-set comparison: {result['model']}"),
        Block(
            "p",
            f"Data {result['data']} (split {result['split']}), {result['n']} images, classifier "
            f"'{result['classifier']}'. 'seen' marks the set the run was trained with.",
        ),
        Block(
            "table",
            header=[
                "set",
                "seen",
                "Recall@1 [95% CI]",
                "balanced acc",
                "ECE",
                *(f"recall {c}" for c in classes),
            ],
            rows=[
                [
                    s["name"],
                    "yes" if s["seen_in_training"] else "no",
                    fmt_ci(s["recall@1"], s["ci95"]),
                    fmt(s["balanced_accuracy"]),
                    fmt(s["ece"]),
                    *(fmt(s["per_class_recall"][c]) for c in classes),
                ]
                for s in result["sets"]
            ],
        ),
    ]


def comparison_csv(result: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    classes = result["classes"]
    w.writerow(
        [
            "set",
            "seen_in_training",
            "recall@1",
            "ci_low",
            "ci_high",
            "balanced_accuracy",
            "ece",
            *(f"recall_{c}" for c in classes),
        ]
    )
    for s in result["sets"]:
        w.writerow(
            [
                s["name"],
                int(s["seen_in_training"]),
                f"{s['recall@1']:.6f}",
                f"{s['ci95'][0]:.6f}",
                f"{s['ci95'][1]:.6f}",
                f"{s['balanced_accuracy']:.6f}",
                f"{s['ece']:.6f}",
                *(f"{s['per_class_recall'][c]:.6f}" for c in classes),
            ]
        )
    return buf.getvalue()
