"""``fungalzsl evaluate``, ``compare`` and ``table``: thin Typer wrappers over the eval Python API."""

from __future__ import annotations

from pathlib import Path

import typer

from fungalzsl.errors import fail
from fungalzsl.eval.methods import BLEND_WEIGHT, DEFAULT_TEMPLATE, METHODS


def _check_classifier(name: str) -> str:
    if name not in METHODS:
        raise fail(f"unknown classifier '{name}'", f"choose one of: {', '.join(METHODS)}")
    return name


def _classifier_list(spec: str) -> list[str]:
    """'mean,template,waffle' → the headline classifier first, then the others to score alongside."""
    names = [_check_classifier(n.strip()) for n in spec.split(",") if n.strip()]
    if not names:
        raise fail("--classifier is empty", f"choose from: {', '.join(METHODS)}")
    return list(dict.fromkeys(names))


# '--descriptions A.jsonl B.jsonl' (space-separated, as documented): Click options take one value each,
# so the files after the first arrive as extra positional arguments, collected here.
_MORE = typer.Argument(None, hidden=True, metavar="MORE.jsonl")


def _collect(descriptions: list[Path] | None, more: list[Path] | None) -> list[Path]:
    if more and not descriptions:
        raise fail(f"unexpected argument(s): {' '.join(map(str, more))}", "see --help for the usage")
    return [*(descriptions or []), *(more or [])]


def evaluate(
    model: str = typer.Argument(
        ...,
        metavar="RUN_DIR_OR_MODEL_SPEC",
        help="A run directory from 'fungalzsl train', or a model spec ('lite', "
        "'openclip:ViT-B-32@openai', 'hf:...') for the zero-shot start.",
    ),
    data: Path = typer.Option(
        ...,
        "--data",
        help="Dataset directory (DIR/SPLIT/CLASS/*.png), a folder of "
        "class folders with --split none, a labelled folder with labels.jsonl (file, label, source; "
        "e.g. data/real-dev: per-source results too), or a release *_data.json.",
    ),
    out: Path = typer.Option(
        ..., "--out", help="Output directory for metrics.json, predictions.csv, figures/ and report.md/.html."
    ),
    split: str = typer.Option("test", "--split", help="Split folder to evaluate; 'none' for DIR/CLASS/*."),
    descriptions: list[Path] = typer.Option(
        None,
        "--descriptions",
        help="Description set(s): --descriptions A.jsonl B.jsonl ... Default: the run's stored class "
        "embeddings or its training set. Several: each is scored, the first is the headline.",
    ),
    classifier: str = typer.Option(
        "mean",
        "--classifier",
        help=f"How classes are built from text: {', '.join(METHODS)}. A comma list "
        "(mean,template,waffle) scores each on the same embeddings; the first is the headline.",
    ),
    hierarchy: Path | None = typer.Option(
        None,
        "--hierarchy",
        help="YAML file mapping each parent class to a list of sub-class names, for --classifier chils "
        "('fungi': the shipped hierarchy for spore/hyphae/mycelium).",
    ),
    template: str = typer.Option(DEFAULT_TEMPLATE, "--template", help="Template for template/waffle/chils."),
    images: Path | None = typer.Option(None, "--images", help="Image root for a release *_data.json --data."),
    baseline: bool = typer.Option(
        True,
        "--baseline/--no-baseline",
        help="Also score the run's starting model (zero-shot, before fine-tuning).",
    ),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=10, help="Bootstrap resamples for 95% intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed for bootstrap, retrieval subsample and waffle words."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
    calibrate_on: str | None = typer.Option(
        None, "--calibrate-on", help="Refit the temperature on this split (e.g. val) before scoring."
    ),
    stack_budget: float | None = typer.Option(
        None,
        "--stack-budget",
        help="Calibrated stacking for classes the run never trained on: lower its trained classes' scores "
        "by the shift that moves at most this share (e.g. 0.05) of its own val images to an untrained class.",
    ),
    blend_weight: float = typer.Option(
        BLEND_WEIGHT,
        "--blend-weight",
        help="--classifier blend: weight on the attribute scores (0 = mean, 1 = attributes' ranking).",
    ),
    more: list[Path] = _MORE,
) -> None:
    """Zero-shot evaluation: Recall@1/2, balanced accuracy, per-class P/R/F1, confusion matrix, ECE,
    retrieval R@1/5/10, bootstrap 95% intervals, figures and a report (fine-tuned vs starting model)."""
    from fungalzsl.eval.classifier import load_hierarchy
    from fungalzsl.eval.evaluate import evaluate_run

    descriptions = _collect(descriptions, more)
    m = evaluate_run(
        model,
        data,
        out,
        split=split,
        descriptions=descriptions or None,
        classifier=_classifier_list(classifier)[0],
        also_classifiers=_classifier_list(classifier)[1:],
        baseline=baseline,
        images=images,
        hierarchy=load_hierarchy(hierarchy) if hierarchy else None,
        template=template,
        n_boot=bootstrap,
        seed=seed,
        batch_size=batch_size,
        device=device,
        calibrate_on=calibrate_on,
        stack_budget=stack_budget,
        blend_weight=blend_weight,
    )
    lo, hi = m["ci95"]["recall@1"]
    typer.echo(
        f"Recall@1 {m['recall@1']:.4f} [{lo:.4f}, {hi:.4f}]  balanced acc {m['balanced_accuracy']:.4f}  "
        f"ECE {m['ece']:.4f}  n={m['n']}"
    )
    if "calibration" in m:
        c = m["calibration"]
        typer.echo(f"temperature refitted on {calibrate_on} ({c['n']} images): logit scale "
                   f"{c['logit_scale_before']:.2f} -> {c['logit_scale']:.2f}")  # fmt: skip
    if "stacking" in m:
        st = m["stacking"]
        typer.echo(f"calibrated stacking: gamma {st['gamma']:.4f} on {len(st['seen'])} trained class(es), "
                   f"budget {st['budget']} of {st['n_val']} val images")  # fmt: skip
    for name, v in list(m.get("by_classifier", {}).items())[1:]:
        typer.echo(f"classifier {name}: Recall@1 {v['recall@1']:.4f}  ECE {v['ece']:.4f}")
    if "baseline" in m:
        typer.echo(f"zero-shot start ({m['baseline']['model']}): Recall@1 {m['baseline']['recall@1']:.4f}")
    if m["unreadable"]:
        typer.echo(
            f"warning: {len(m['unreadable'])} unreadable image(s) skipped (listed in metrics.json)", err=True
        )
    typer.echo(f"wrote {out / 'metrics.json'} and {out / 'report.html'}")


def compare(
    run: str = typer.Argument(..., metavar="RUN_DIR", help="Run directory (or model spec) to evaluate."),
    data: Path = typer.Option(..., "--data", help="Dataset directory or release *_data.json."),
    descriptions: list[Path] = typer.Option(
        ..., "--descriptions", help="Two or more description sets: --descriptions A.jsonl B.jsonl ..."
    ),
    out: Path = typer.Option(..., "--out", help="Output directory for comparison.md/.csv/.json and figures."),
    split: str = typer.Option("test", "--split"),
    classifier: str = typer.Option("mean", "--classifier", help=f"One of: {', '.join(METHODS)}."),
    images: Path | None = typer.Option(None, "--images", help="Image root for a release *_data.json --data."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=10),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device"),
    more: list[Path] = _MORE,
) -> None:
    """Cross-description transfer: score one model with several description sets (e.g. the training set,
    the authors' Llama-2 captions, a GPT/Claude/Gemini set): Recall@1 with 95% CI per set and per class,
    and the paper's Figure 4."""
    from fungalzsl.eval.compare import compare_sets

    descriptions = _collect(descriptions, more)
    if len(descriptions) < 2:
        raise fail("compare needs at least two --descriptions files", "use 'fungalzsl evaluate' for one set")
    res = compare_sets(
        run,
        data,
        descriptions,
        out,
        split=split,
        classifier=_check_classifier(classifier),
        images=images,
        n_boot=bootstrap,
        seed=seed,
        device=device,
    )
    for row in res["sets"]:
        lo, hi = row["ci95"]
        typer.echo(f"{row['name']:<32} Recall@1 {row['recall@1']:.4f} [{lo:.4f}, {hi:.4f}]")
    typer.echo(f"wrote {out / 'comparison.md'} and {out / 'report.html'}")


def table(
    runs: list[Path] = typer.Argument(
        ...,
        metavar="RUN_DIR...",
        help="Run directories (their latest evaluation is used) or "
        "evaluation directories holding metrics.json.",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Write the Markdown table here (and a .csv beside it)."
    ),
    split: str = typer.Option("test", "--split", help="Which split's evaluation to report."),
    data: list[Path] = typer.Option(
        [],
        "--data",
        help="Also a Recall@1 column for each run's latest evaluation on this data set, e.g. "
        "data/real-dev (repeatable; '–' for a run never evaluated on it).",
    ),
) -> None:
    """The paper's Table 1 over several runs: model, learning rate, s/it, Recall@1 (with 95% CI),
    trainable parameters and peak memory; baselines (fungalzsl baseline) are rows like any run."""
    from fungalzsl.eval.table import build_table, table_csv, table_markdown

    rows = build_table(runs, split=split, datasets=data)
    md = table_markdown(rows)
    if out is not None:
        from fungalzsl.io import atomic_write_text

        atomic_write_text(out, md)
        atomic_write_text(out.with_suffix(".csv"), table_csv(rows))
        typer.echo(f"wrote {out} and {out.with_suffix('.csv')}")
    typer.echo(md, nl=False)
