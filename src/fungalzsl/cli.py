"""The ``fungalzsl`` command line. Each stage's commands live beside the stage's code; this module only
assembles them and turns user errors into one-line messages with a non-zero exit."""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from fungalzsl import __version__
from fungalzsl.errors import FungalError, debug_enabled, explain

# The order of `fungalzsl --help`: the stages as data flows through them, then the protocols and `run`.
PIPELINE_ORDER = (
    "generate", "describe", "train", "baseline", "evaluate", "compare", "table", "fewshot", "adapt",
    "predict", "export", "serve", "loco", "novel", "shift", "run",
)  # fmt: skip


class _Group(TyperGroup):
    """Turns a user error raised anywhere below into one red line on stderr and exit code 2.

    User errors are FungalError and the exception classes :func:`fungalzsl.errors.explain` knows (a file
    that is not UTF-8, a full disk, a damaged safetensors file...); anything else is a bug and keeps its
    traceback. ``FUNGALZSL_DEBUG=1`` shows the traceback of known errors too."""

    def list_commands(self, ctx):  # type: ignore[no-untyped-def]
        """``--help`` in pipeline order (as data flows), not click's alphabetical one; a command not in
        :data:`PIPELINE_ORDER` comes after, in registration order."""
        rank = {name: i for i, name in enumerate(PIPELINE_ORDER)}
        return sorted(self.commands, key=lambda n: rank.get(n, len(rank)))

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as e:
            line = explain(e)
            if line is None or debug_enabled():
                raise
            typer.secho(f"error: {line}", fg=typer.colors.RED, err=True)
            raise typer.Exit(e.exit_code if isinstance(e, FungalError) else 2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted; finished work is kept: run the same command again to resume", err=True)
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_Group,
    name="fungalzsl",
    help="Zero-shot recognition of fungal growth stages (spore, hyphae, mycelium) with CLIP-style models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fungalzsl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Generate synthetic fungi, describe classes with LLMs, fine-tune, evaluate, predict and serve."""


def _register() -> None:
    from fungalzsl.eval import cli as eval_cli
    from fungalzsl.fewshot.cli import adapt, baseline, fewshot
    from fungalzsl.pipeline.cli import loco, novel, run, shift
    from fungalzsl.predict.cli import export, predict
    from fungalzsl.serve.cli import serve
    from fungalzsl.synth.cli import app as generate_app
    from fungalzsl.text.cli import app as describe_app
    from fungalzsl.train.cli import train

    app.add_typer(generate_app, name="generate")
    app.add_typer(describe_app, name="describe")
    app.command("train")(train)
    app.command("evaluate")(eval_cli.evaluate)
    app.command("compare")(eval_cli.compare)
    app.command("table")(eval_cli.table)
    app.command("loco")(loco)
    app.command("novel")(novel)
    app.command("shift")(shift)
    app.command("predict")(predict)
    app.command("serve")(serve)
    app.command("export")(export)
    app.command("adapt")(adapt)
    app.command("baseline")(baseline)
    app.command("fewshot")(fewshot)
    app.command("run")(run)


_register()


def main() -> None:
    """Console entry point: tune the allocator, run the command, print user errors on one line."""
    from fungalzsl.runtime import reexec_with_tuned_allocator

    reexec_with_tuned_allocator()
    # File names that are not UTF-8 arrive as surrogate escapes (os.fsdecode); printing one must show it
    # (as \udcXX) rather than crash the command after its work is done.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    sys.exit(app(prog_name="fungalzsl"))
