"""``fungalzsl run``: generate → describe → train → evaluate, cached and resumable stage by stage.

Each stage writes under ``OUT/``: ``data/`` (images + metadata), ``descriptions/<set>.jsonl``, ``run/``
(the trained model) and ``eval/`` (metrics.json, report.md, report.html, figures). The stage cache lives
in ``OUT/pipeline.json`` (see :mod:`fungalzsl.stages`)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel, ConfigDict, Field

from fungalzsl.config import load_section, resolve_config_path, validate
from fungalzsl.errors import fail
from fungalzsl.io import plain_name
from fungalzsl.stages import Stage, StageRunner

DEFAULT_CONFIG = "cpu-default"


class EvaluateSettings(BaseModel):
    """The ``evaluate:`` section used by ``fungalzsl run``."""

    model_config = ConfigDict(extra="forbid")
    split: str = "test"
    baseline: bool = True
    classifier: str = "mean"
    n_boot: int = Field(1000, ge=0)


def _generator_inputs(config: Path, section: dict[str, Any]) -> tuple[Any, int, str, dict[str, Any]]:
    """(preset, seed, mode, fully resolved settings) from a ``generate:`` section.

    The section is either a whole generator preset (it has ``classes``, as in configs/paper.yaml) or a
    reference to one (``preset: paper``) plus overrides (num_images, size, palette, ...)."""
    from fungalzsl.synth.generate import resolve_preset
    from fungalzsl.synth.plan import IMAGE_ALGORITHM
    from fungalzsl.synth.preset import GeneratorPreset

    section = dict(section)
    seed = int(section.pop("seed", 0))
    mode = str(section.pop("mode", "classes"))
    if "classes" in section:
        preset = validate(GeneratorPreset, section, f"{config.name}: generate")
    else:
        preset = resolve_preset(section.pop("preset", "paper"), **section)
    # The image algorithm is part of the stage key: after an upgrade that changes the pixels, the
    # data (and everything trained on it) is made again instead of mixing two versions.
    settings = {
        "preset": preset.model_dump(mode="json"),
        "seed": seed,
        "mode": mode,
        "algorithm": IMAGE_ALGORITHM,
    }
    return preset, seed, mode, settings


def run_pipeline(
    out: str | Path = "runs/default",
    config: str | Path = DEFAULT_CONFIG,
    llm: str | None = None,
    workers: int | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Run every stage that is not already up to date; returns the evaluation metrics."""
    from fungalzsl.eval.evaluate import evaluate_run
    from fungalzsl.synth.generate import generate_dataset
    from fungalzsl.text.settings import describe_from_settings, load_describe_settings
    from fungalzsl.train.loop import resolve_config, train_run

    cfg_path = resolve_config_path(config)
    overrides = overrides or {}
    sections = {
        name: {**load_section(cfg_path, name), **overrides.get(name, {})}
        for name in ("generate", "describe", "train", "evaluate")
    }
    preset, seed, mode, gen_settings = _generator_inputs(cfg_path, sections["generate"])
    describe = load_describe_settings(None, {**sections["describe"], **({"backend": llm} if llm else {})})
    train_cfg = resolve_config(sections["train"], None)
    evaluate = validate(EvaluateSettings, sections["evaluate"], f"{cfg_path.name}: evaluate")

    out = Path(out)
    data_dir, run_dir, eval_dir = out / "data", out / "run", out / "eval"
    set_name = plain_name(
        describe.set_name or describe.backend.split(":", 1)[0], f"{cfg_path.name}: describe set_name"
    )
    desc_file = out / "descriptions" / f"{set_name}.jsonl"
    classes = [c.name for c in preset.classes]
    describe = describe.model_copy(update={"classes": classes, "set_name": set_name})
    runner = StageRunner(out, log=log)

    def do_generate(resume: bool) -> None:
        generate_dataset(
            data_dir,
            preset,
            seed=seed,
            mode=mode,
            workers=workers,  # type: ignore[arg-type]
            resume=resume or not data_dir.exists(),
            overwrite=not resume and data_dir.exists(),
        )

    def do_describe(resume: bool) -> None:
        report = describe_from_settings(describe, desc_file, progress=True, resume=resume)
        if report.shortfall:
            short = ", ".join(f"{c} (-{n})" for c, n in report.shortfall.items())
            raise fail(
                f"the describer fell short of {describe.per_class} descriptions per class: {short}",
                "lower describe.per_class, widen the word limits or use another --llm",
            )

    def do_train(resume: bool) -> None:
        if not resume and run_dir.exists():
            shutil.rmtree(run_dir)
        train_run(data_dir, desc_file, run_dir, config=train_cfg, resume=resume)

    def do_evaluate(resume: bool) -> None:
        if eval_dir.exists():
            shutil.rmtree(eval_dir)
        evaluate_run(
            run_dir,
            data_dir,
            eval_dir,
            split=evaluate.split,
            baseline=evaluate.baseline,
            classifier=evaluate.classifier,
            n_boot=evaluate.n_boot,
        )

    stages = [
        Stage("generate", gen_settings, do_generate, outputs=[data_dir / "dataset.json"]),
        Stage(
            "describe",
            describe.model_dump(exclude={"concurrency", "timeout", "max_retries", "retry_backoff"}),
            do_describe,
            after=["generate"],
            outputs=[desc_file],
        ),
        Stage(
            "train",
            train_cfg.model_dump(exclude={"progress", "num_workers", "device"}),
            do_train,
            after=["generate", "describe"],
            outputs=[run_dir / "model.safetensors"],
        ),
        Stage(
            "evaluate",
            evaluate.model_dump(),
            do_evaluate,
            after=["train", "describe", "generate"],
            outputs=[eval_dir / "metrics.json", eval_dir / "report.html"],
        ),
    ]
    for stage in stages:
        runner.run(stage)
    import json

    return json.loads((eval_dir / "metrics.json").read_text())


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
    report = out / "eval" / "report.html"
    lines.append(f"report: {report}")
    lines.append(f"predict: fungalzsl predict {out / 'run'} IMAGES...   serve: fungalzsl serve {out / 'run'}")
    return "\n".join(lines)
