"""``run_pipeline``: generate → describe → train → evaluate (→ evaluate-real), cached and resumable stage
by stage.

Each stage writes under ``OUT/``: ``data/`` (images + metadata), ``descriptions/<set>.jsonl``, ``run/``
(the trained model), ``eval/`` (metrics.json, report.md, report.html, figures) and, when the config's
``evaluate.real`` names a labelled real-image folder that exists, ``eval-real/``; ``OUT/report.md``
and ``report.html`` show the synthetic test and the real set side by side. The stage cache lives
in ``OUT/pipeline.json`` (see :mod:`fungalzsl.pipeline.stages`). Each section of the config is read by
its own stage's settings (``synth.settings``, ``text.settings``, ``train``, ``eval.settings``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from fungalzsl.config import load_section, resolve_config_path, validate
from fungalzsl.errors import fail
from fungalzsl.eval.settings import EvaluateSettings
from fungalzsl.io import plain_name
from fungalzsl.pipeline.real import REAL_DIR, real_stage, write_run_report
from fungalzsl.pipeline.stages import Stage, StageRunner
from fungalzsl.rundir import MODEL_FILE, PIPELINE_RUN_DIR

DEFAULT_CONFIG = "cpu-default"


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
    from fungalzsl.eval.textcache import TextStore
    from fungalzsl.synth.generate import generate_dataset
    from fungalzsl.synth.settings import load_generate_settings
    from fungalzsl.text.settings import describe_from_settings, load_describe_settings
    from fungalzsl.train.loop import resolve_config, train_run
    from fungalzsl.train.state import can_resume

    cfg_path = resolve_config_path(config)
    overrides = overrides or {}
    sections = {
        name: {**load_section(cfg_path, name), **overrides.get(name, {})}
        for name in ("generate", "describe", "train", "evaluate")
    }
    preset, seed, mode, gen_settings = load_generate_settings(cfg_path, sections["generate"])
    describe = load_describe_settings(None, {**sections["describe"], **({"backend": llm} if llm else {})})
    train_cfg = resolve_config(sections["train"], None)
    evaluate = validate(EvaluateSettings, sections["evaluate"], f"{cfg_path.name}: evaluate")

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise fail(
            f"--out {out} is a file, not a folder", "give a folder for the run's outputs (new or earlier)"
        )
    data_dir, run_dir, eval_dir = out / "data", out / PIPELINE_RUN_DIR, out / "eval"
    set_name = plain_name(
        describe.set_name or describe.backend.split(":", 1)[0], f"{cfg_path.name}: describe set_name"
    )
    desc_file = out / "descriptions" / f"{set_name}.jsonl"
    classes = [c.name for c in preset.classes]
    describe = describe.model_copy(update={"classes": classes, "set_name": set_name})
    runner = StageRunner(out, log=log)
    # One text store for both evaluations: the real set is scored with the very descriptions the
    # synthetic test embedded (frozen MiniLM outputs, keyed by its weights: fungalzsl.eval.textcache).
    text_store = TextStore()

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
        resume = resume and can_resume(run_dir)  # killed before its first epoch ended: start it again
        if not resume and run_dir.exists():
            shutil.rmtree(run_dir)
        train_run(data_dir, desc_file, run_dir, config=train_cfg, resume=resume)

    def do_evaluate(resume: bool) -> None:
        # evaluate_run builds eval/ aside and swaps it in: a failed or killed evaluation keeps the last one
        evaluate_run(
            run_dir,
            data_dir,
            eval_dir,
            split=evaluate.split,
            baseline=evaluate.baseline,
            classifier=evaluate.classifier,
            n_boot=evaluate.n_boot,
            text_store=text_store,
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
            outputs=[run_dir / MODEL_FILE],
        ),
        Stage(
            "evaluate",
            evaluate.model_dump(exclude={"real"}),  # the real set is its own stage
            do_evaluate,
            after=["train", "describe", "generate"],
            outputs=[eval_dir / "metrics.json", eval_dir / "report.html"],
        ),
    ]
    real = real_stage(evaluate, cfg_path, out, run_dir, log, text_store)
    for stage in [*stages, *([real] if real else [])]:
        runner.run(stage)
    write_run_report(out)
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    if real is not None:
        metrics["real"] = json.loads((out / REAL_DIR / "metrics.json").read_text())
    return metrics
