"""``fungalzsl describe``: write class descriptions with an LLM (or the offline bank), import descriptions
made elsewhere, and inspect description sets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from fungalzsl.errors import fail

app = typer.Typer(
    help=(
        "Write N descriptions per class with an LLM or the offline knowledge bank (paper §2.2).\n\n"
        "Examples:\n\n"
        "  fungalzsl describe --backend bank --per-class 200 --out descriptions/bank.jsonl\n\n"
        "  fungalzsl describe --backend ollama:llama3.2 --per-class 200 --out descriptions/llama.jsonl\n\n"
        "  OPENAI_API_KEY=... fungalzsl describe --backend openai:gpt-4o --per-class 200 --out d/gpt4o.jsonl\n\n"
        "Rerunning the same command resumes: descriptions already in --out are kept and only the missing\n"
        "ones are generated."
    ),
    invoke_without_command=True,
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _split_classes(value: str) -> list[str]:
    return [c.strip() for c in value.split(",") if c.strip()]


@app.callback(invoke_without_command=True)
def describe(
    ctx: typer.Context,
    backend: str = typer.Option(
        "bank",
        "--backend",
        "-b",
        help="bank | openai:MODEL | ollama:MODEL | vllm:MODEL | llama-server:MODEL | lmstudio:MODEL | "
        "gemini:MODEL | claude:MODEL | hf:ID_OR_DIR | llamacpp:FILE.gguf",
    ),
    per_class: int = typer.Option(100, "--per-class", "-n", help="Descriptions per class (N)."),
    out: Path = typer.Option(
        None, "--out", "-o", help="Output description set (.jsonl); resumed if it exists."
    ),
    classes: str = typer.Option("spore,hyphae,mycelium", "--classes", help="Comma-separated class names."),
    seed: int = typer.Option(0, "--seed", help="Run seed; each request gets a seed derived from it."),
    temperature: float = typer.Option(0.9, "--temperature", help="Sampling temperature (paper: 0.9)."),
    top_p: float = typer.Option(None, "--top-p", help="Nucleus sampling (backend default when unset)."),
    top_k: int = typer.Option(None, "--top-k", help="Top-k sampling, where the backend supports it."),
    max_tokens: int = typer.Option(160, "--max-tokens", help="Most tokens per answer."),
    min_words: int = typer.Option(10, "--min-words", help="L_min: shorter answers are resampled."),
    max_words: int = typer.Option(70, "--max-words", help="L_max: longer answers are resampled."),
    batch_size: int = typer.Option(
        8, "--batch-size", "-B", help="Descriptions per batch (B); saved per batch."
    ),
    mask_class_name: bool = typer.Option(
        False, "--mask-class-name", help="Replace each class's own name in its texts by 'this stage'."
    ),
    set_name: str = typer.Option(None, "--set-name", help="Name of the set (default: the --out file stem)."),
    prompts: Path = typer.Option(
        None, "--prompts", help="Prompt file (YAML) instead of the paper's prompts."
    ),
    bank: Path = typer.Option(
        None, "--bank", help="Extra YAML bank adding/replacing classes (bank backend)."
    ),
    concurrency: int = typer.Option(4, "--concurrency", help="HTTP requests in flight at once."),
    base_url: str = typer.Option(
        None, "--base-url", help="OpenAI-compatible server URL (env OPENAI_BASE_URL)."
    ),
    api_key_env: str = typer.Option(None, "--api-key-env", help="Environment variable holding the API key."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds per HTTP request."),
    max_retries: int = typer.Option(5, "--max-retries", help="Retries on 429/5xx/timeouts (with backoff)."),
    retry_backoff: float = typer.Option(
        1.0, "--retry-backoff", help="First retry delay in seconds (doubles)."
    ),
    near_duplicate: float = typer.Option(
        0.8, "--near-duplicate", help="Drop texts whose word-3-gram Jaccard with a kept one is at least this."
    ),
    max_resample: int = typer.Option(3, "--max-resample", help="Extra attempts per missing description."),
    device: str = typer.Option("auto", "--device", help="hf/llamacpp: auto, cpu, cuda, cuda:1, mps."),
    dtype: str = typer.Option("auto", "--dtype", help="hf: auto, float32, bfloat16, float16."),
    n_gpu_layers: int = typer.Option(0, "--n-gpu-layers", help="llamacpp: layers to offload (-1: all)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start --out afresh instead of resuming it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    config: str = typer.Option(
        None, "--config", help="YAML config (or preset name) whose 'describe' section sets the defaults."
    ),
) -> None:
    """Write N descriptions per class to a description set (JSONL), resuming any partial file."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise fail(
            "missing --out FILE.jsonl", "e.g. fungalzsl describe --backend bank --per-class 200 --out d.jsonl"
        )
    from fungalzsl.text.settings import describe_from_settings, load_describe_settings

    # With --config, the file's describe section is the base and options typed on the command line win.
    names = [n for n in ctx.params if n not in ("out", "config", "overwrite", "quiet")]
    # Compared by name: Typer may ship its own copy of click, with its own ParameterSource enum.
    given = {n for n in names if getattr(ctx.get_parameter_source(n), "name", "") == "COMMANDLINE"}
    chosen = {n: ctx.params[n] for n in names if config is None or n in given}
    chosen = {k: (str(v) if isinstance(v, Path) else v) for k, v in chosen.items()}
    settings = load_describe_settings(config, chosen)
    report = describe_from_settings(
        settings, out, progress=not quiet and sys.stderr.isatty(), resume=not overwrite
    )
    max_resample = settings.max_resample
    kept = sum(report.existing.values())
    rate = report.total_added / report.seconds if report.seconds > 0 else 0.0
    typer.echo(
        f"{out}: set '{report.set_name}' from {report.backend}: {report.total_added} new"
        f" ({rate:.1f}/s), {kept} kept from before"
    )
    for cls, reasons in report.rejected.items():
        if reasons:
            typer.echo(
                f"  {cls}: resampled {sum(reasons.values())} ({', '.join(f'{k} {v}' for k, v in reasons.items())})"
            )
    if report.shortfall:
        gaps = ", ".join(f"{c} {g}" for c, g in report.shortfall.items())
        typer.secho(
            f"warning: still missing {gaps} after {max_resample} resamples each; rerun to top up, or widen"
            " --min-words/--max-words",
            fg=typer.colors.YELLOW, err=True,
        )  # fmt: skip


@app.command("import")
def import_cmd(
    src: Path = typer.Argument(..., help="JSON (list or class->list), JSONL, CSV/TSV (class,text) or TXT."),
    out: Path = typer.Option(..., "--out", "-o", help="Description set to write (.jsonl)."),
    cls: str = typer.Option(None, "--class", help="Class of every line (needed for TXT without classes)."),
    fmt: str = typer.Option("auto", "--format", help="auto (from the suffix), json, jsonl, csv, tsv, txt."),
    set_name: str = typer.Option(None, "--set-name", help="Set name (default: the --out file stem)."),
    model: str = typer.Option("unknown", "--model", help="Which LLM wrote them, for provenance."),
    mapping: list[str] = typer.Option(None, "--map", help="Rename a class label: OLD=NEW (repeatable)."),
    keep_prompts: bool = typer.Option(False, "--keep-prompts", help="Do not strip echoed prompts."),
    mask_class_name: bool = typer.Option(
        False, "--mask-class-name", help="Replace class names by 'this stage'."
    ),
    dedupe: bool = typer.Option(False, "--dedupe", help="Drop exact and near duplicates."),
    min_words: int = typer.Option(1, "--min-words", help="Drop texts shorter than this (after clean-up)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
) -> None:
    """Convert the authors' released captions or your own LLM outputs into a description set."""
    from fungalzsl.text.importer import import_descriptions

    class_map = {}
    for m in mapping or []:
        old, sep, new = m.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise fail(f"--map {m!r} is not OLD=NEW", "e.g. --map early=spore")
        class_map[old.strip()] = new.strip()
    rep = import_descriptions(
        src, out, fmt=fmt, cls=cls, set_name=set_name, model=model, class_map=class_map,
        strip_prompts=not keep_prompts, mask_class_name=mask_class_name, dedupe=dedupe, min_words=min_words,
        overwrite=overwrite,
    )  # fmt: skip
    counts = ", ".join(f"{c} {n}" for c, n in rep.counts.items())
    typer.echo(f"{out}: set '{rep.set_name}', {sum(rep.counts.values())} descriptions ({counts})")
    for c, p in rep.stripped_prefix.items():
        typer.echo(f"  {c}: stripped echoed prompt {p[:70]!r}{'...' if len(p) > 70 else ''}")
    if rep.dropped:
        typer.echo("  dropped: " + ", ".join(f"{k} {v}" for k, v in rep.dropped.items()))


@app.command("stats")
def stats_cmd(
    files: list[Path] = typer.Argument(..., help="Description sets (.jsonl)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    out: Path = typer.Option(None, "--out", "-o", help="Also write the JSON to this file."),
) -> None:
    """Counts, lengths, duplicates, prompt echoes, class-name leaks and vocabulary overlap of sets."""
    from fungalzsl.io import atomic_write_json
    from fungalzsl.text.stats import describe_stats, print_stats

    stats = describe_stats(list(files))
    if out:
        atomic_write_json(out, stats)
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
    else:
        print_stats(stats)
