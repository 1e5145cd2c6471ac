"""``fungalzsl run``, ``loco`` and ``shift``: the commands that drive several stages (thin Typer wrappers
over :mod:`fungalzsl.pipeline.end_to_end` and :mod:`fungalzsl.pipeline.protocols`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from fungalzsl.eval.methods import BLEND_WEIGHT
from fungalzsl.pipeline.end_to_end import DEFAULT_CONFIG, run_pipeline


def run(
    out: Path = typer.Option(Path("runs/default"), "--out", "-o", help="Directory for every stage's output."),
    config: str = typer.Option(
        DEFAULT_CONFIG,
        "--config",
        "-c",
        help="Preset name (cpu-default, paper) or a YAML file with generate/describe/train/evaluate sections.",
    ),
    llm: str | None = typer.Option(
        None, "--llm", help="Description backend spec, e.g. ollama:llama3.2 or openai:gpt-4o (config: bank)."
    ),
    workers: int | None = typer.Option(None, "--workers", help="Processes for image generation (all cores)."),
    num_images: int | None = typer.Option(
        None, "--num-images", help="Override the dataset size (quick tries)."
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="Override the training epochs."),
) -> None:
    """Run the whole pipeline: generate images, describe classes, fine-tune, evaluate, report.

    Stages already done with the same settings are skipped; a killed run picks up where it stopped;
    changing one stage's settings reruns that stage and the ones after it."""
    overrides: dict[str, dict[str, Any]] = {}
    if num_images is not None:
        overrides["generate"] = {"num_images": num_images}
    if epochs is not None:
        overrides["train"] = {"epochs": epochs}
    metrics = run_pipeline(
        out,
        config,
        llm=llm,
        workers=workers,
        overrides=overrides,
        log=lambda m: typer.secho(m, fg=typer.colors.CYAN, err=True),
    )
    typer.echo(_summary(metrics, Path(out)))


def _summary(metrics: dict[str, Any], out: Path) -> str:
    r1 = metrics.get("recall@1")
    lines = [f"test Recall@1 = {r1:.4f}" if isinstance(r1, float) else "test Recall@1 = n/a"]
    if isinstance(metrics.get("ece"), float):
        lines.append(f"ECE = {metrics['ece']:.4f}")
    if isinstance(metrics.get("real"), dict):
        from fungalzsl.pipeline.real import real_summary_line

        lines.append(real_summary_line(metrics["real"]))
    report = out / "report.html"
    lines.append(f"report: {report}")
    lines.append(f"predict: fungalzsl predict {out / 'run'} IMAGES...   serve: fungalzsl serve {out / 'run'}")
    return "\n".join(lines)


def loco(
    data: Path = typer.Option(..., "--data", help="Dataset directory with train/ (val/) and the test split."),
    descriptions: Path = typer.Option(..., "--descriptions", help="Training description set (JSONL)."),
    out: Path = typer.Option(
        ..., "--out", help="Output directory: views/, runs/, evals/, loco.md/.csv/.json."
    ),
    model: str = typer.Option("lite", "--model", help="Model spec to fine-tune."),
    config: str = typer.Option("cpu-default", "--config", help="Training preset name or YAML file."),
    eval_descriptions: Path | None = typer.Option(
        None,
        "--eval-descriptions",
        help="Set used at test time (must describe every class); default: training set.",
    ),
    hold_out: list[str] = typer.Option(
        None, "--hold-out", help="Class(es) to hold out (default: each in turn)."
    ),
    split: str = typer.Option("test", "--split"),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override the preset's epochs."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=10),
    stack_budget: float | None = typer.Option(
        None,
        "--stack-budget",
        help="Calibrated stacking (evaluate --stack-budget): lower each run's trained classes by the shift "
        "that moves at most this share (e.g. 0.05) of its own val images to the held-out class.",
    ),
) -> None:
    """Leave-one-class-out (true zero-shot): fine-tune without each class, evaluate on all classes with
    the held-out one known only through its descriptions; reports per held-out class."""
    from fungalzsl.pipeline.protocols import leave_one_class_out

    res = leave_one_class_out(
        data,
        descriptions,
        out,
        model=model,
        config=config,
        eval_descriptions=eval_descriptions,
        classes=hold_out or None,
        split=split,
        overrides={"epochs": epochs} if epochs else None,
        n_boot=bootstrap,
        stack_budget=stack_budget,
    )
    for r in res["rows"]:
        gamma = "" if r["gamma"] is None else f"  gamma {r['gamma']:.4f}"
        typer.echo(
            f"without {r['held_out']:<12} Recall@1 {r['recall@1']:.4f}  held-out recall "
            f"{r['held_out_recall']:.4f}  seen recall {r['seen_recall']:.4f}{gamma}"
        )
    typer.echo(f"wrote {out / 'loco.md'} and {out / 'report.html'}")


def novel(
    run: Path = typer.Argument(
        ..., metavar="RUN_DIR", help="Run directory, or the output folder of 'fungalzsl run' (its run/)."
    ),
    classes: str = typer.Option(
        "germinating-spore,sporulating-mycelium,budding-yeast",
        "--classes",
        help="Comma-separated test-only stages of the preset (test_only: true), never trained on.",
    ),
    out: Path = typer.Option(
        ..., "--out", help="Output folder (written whole): data/, evals/, novel.md/.csv/.json."
    ),
    n: int = typer.Option(60, "--n", min=1, help="Fresh test images per class (trained and new)."),
    descriptions: list[str] = typer.Option(
        None,
        "--descriptions",
        help="Set(s) to score, each in turn: 'bank' (shipped visible-attribute bank), 'notes' (shipped "
        "microscopist's notes) or a JSONL file; trained classes it lacks come from the run's set. Default: bank.",
    ),
    seed: int = typer.Option(1000, "--seed", help="Generator seed (must differ from the training data's)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=10),
    classifier: str = typer.Option(
        "mean",
        "--classifier",
        help="mean (one embedding per class), attributes (scored through visible-attribute prompts, "
        "docs/evaluation.md#true-zero-shot) or blend (both); any --classifier of evaluate works.",
    ),
    stack_budget: float | None = typer.Option(
        None,
        "--stack-budget",
        help="Calibrated stacking (evaluate --stack-budget): lower the trained classes' scores by the shift "
        "that moves at most this share (e.g. 0.05) of the run's own val images to a new stage.",
    ),
    blend_weight: float = typer.Option(
        BLEND_WEIGHT, "--blend-weight", help="--classifier blend: weight on the attribute scores (0 = mean)."
    ),
) -> None:
    """True zero-shot on new growth stages: classify fresh images of the run's classes and of stages it never
    saw among all of them, from descriptions only; per-class recall (95% CI), confusion, trained Recall@1."""
    from fungalzsl.pipeline.novel import novel_stages

    names = [c.strip() for c in classes.split(",") if c.strip()]
    res = novel_stages(
        run,
        out,
        names,
        n=n,
        descriptions=descriptions or ["bank"],
        seed=seed,
        n_boot=bootstrap,
        classifier=classifier,
        stack_budget=stack_budget,
        blend_weight=blend_weight,
    )
    for r in res["rows"]:
        stages = "  ".join(f"{c} {r['per_class'][c]['recall']:.3f}" for c in res["novel"])
        typer.echo(f"{r['set']:<10} {stages}  trained Recall@1 {r['trained_recall@1']:.3f}")
    typer.echo(f"wrote {Path(out) / 'novel.md'}")


def shift(
    run: Path = typer.Argument(
        ..., metavar="RUN_DIR", help="Run directory, or the output folder of 'fungalzsl run' (its run/)."
    ),
    out: Path = typer.Option(..., "--out", help="Output directory: data/, evals/, shift.md/.csv/.json."),
    variant: list[str] = typer.Option(
        None,
        "--variant",
        help="Variant(s): reference, random-palette, grayscale, noise, blur, sequence (default: all).",
    ),
    num_images: int = typer.Option(300, "--num-images", min=3, help="Images per generated test set."),
    seed: int = typer.Option(1000, "--seed", help="Generator seed (must differ from the training data's)."),
    descriptions: list[Path] = typer.Option(
        None, "--descriptions", help="Default: the run's class embeddings."
    ),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=10),
    workers: int = typer.Option(1, "--workers", min=1, help="Generator processes."),
) -> None:
    """Shift robustness: evaluate a run on freshly generated variants of its training preset (random palette,
    grayscale, noise, blur, sequence mode) and report the drop from the in-distribution reference."""
    from fungalzsl.pipeline.protocols import shift_robustness

    res = shift_robustness(
        run,
        out,
        variants=variant or None,
        num_images=num_images,
        seed=seed,
        descriptions=descriptions or None,
        n_boot=bootstrap,
        workers=workers,
    )
    for r in res["rows"]:
        drop = "" if r["drop"] is None else f"  drop {r['drop']:+.4f}"
        typer.echo(f"{r['variant']:<16} Recall@1 {r['recall@1']:.4f}{drop}")
    typer.echo(f"wrote {out / 'shift.md'}")
