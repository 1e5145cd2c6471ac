"""``fungalzsl predict``: classify images, folders and globs with a trained run."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fungalzsl.errors import fail
from fungalzsl.io import atomic_write_json, atomic_write_text
from fungalzsl.predict.result import Prediction
from fungalzsl.rundir import resolve_run_dir

if TYPE_CHECKING:
    from fungalzsl.predict.classifier import Classifier
    from fungalzsl.predict.onnx import OnnxClassifier


def write_results(path: Path, results: list[Prediction], classes: list[str]) -> None:
    """Write predictions as CSV (one row per image) or JSON, chosen by the file suffix."""
    rows = [r.as_row(classes) for r in results]
    if path.suffix.lower() == ".json":
        atomic_write_json(path, {"classes": classes, "results": rows})
    elif path.suffix.lower() == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["path", "prediction", *[f"p_{c}" for c in classes], "error"])
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, buf.getvalue())
    else:
        raise fail(
            f"unknown output format {path.suffix or '(none)'} for {path}", "use a .csv or .json file name"
        )


def predict(
    run_dir: Path = typer.Argument(
        ...,
        help="Run directory from 'fungalzsl train', the output folder of 'fungalzsl run' (its run/ is used), "
        "or an ONNX export directory from 'fungalzsl export'.",
    ),
    inputs: list[str] = typer.Argument(
        ..., help="Image files, folders (searched recursively) or glob patterns."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write results to this .csv or .json file."
    ),
    classes: Path | None = typer.Option(
        None, "--classes", help="Descriptions JSONL defining the label set (zero-shot on new labels)."
    ),
    batch_size: int = typer.Option(32, min=1, help="Images per forward pass."),
    device: str = typer.Option("cpu", help="Torch device, e.g. cpu or cuda."),
    show: int = typer.Option(50, help="Rows to print on screen (all are written to --output)."),
) -> None:
    """Classify images into growth stages and print per-class probabilities.

    Unreadable files are listed with their reason and the others are still classified; the exit code is
    non-zero only when no image could be classified."""
    if output is not None and output.suffix.lower() not in (".csv", ".json"):
        raise fail(
            f"unknown output format {output.suffix or '(none)'} for {output}", "use a .csv or .json file name"
        )
    from fungalzsl.predict.onnx import OnnxClassifier, is_export_dir

    clf: Classifier | OnnxClassifier
    if is_export_dir(run_dir):  # onnxruntime only: this path never imports torch (docs/predict.md)
        if classes is not None:
            raise fail(
                "--classes needs the text tower, which an ONNX export does not have",
                "predict from the run directory",
            )
        clf = OnnxClassifier(run_dir)
    else:
        run = resolve_run_dir(run_dir, "predict")  # before torch loads: a wrong path fails at once
        from fungalzsl.predict.classifier import Classifier
        from fungalzsl.runtime import configure_torch_threads

        configure_torch_threads()
        clf = Classifier.load(run, classes=classes, device=device)
    results = clf.predict(inputs, batch_size=batch_size)
    console = Console()
    table = Table(title=f"{sum(r.ok for r in results)} of {len(results)} images classified")
    table.add_column("image", overflow="fold")
    table.add_column("prediction")
    for c in clf.classes:
        table.add_column(c, justify="right")
    for r in results[:show]:
        if r.ok:
            table.add_row(
                escape(r.path), r.prediction or "", *[f"{r.probabilities[c]:.3f}" for c in clf.classes]
            )
        else:
            table.add_row(escape(r.path), "[red]error[/red]", *["" for _ in clf.classes])
    console.print(table)
    if len(results) > show:
        console.print(
            f"… {len(results) - show} more not shown"
            + (f"; all {len(results)} are in {output}" if output else "; use --output FILE.csv for all"),
            soft_wrap=True,
        )
    errors = [r for r in results if not r.ok]
    for r in errors:
        typer.secho(f"skipped: {r.error}", fg=typer.colors.YELLOW, err=True)
    if output is not None:
        write_results(output, results, clf.classes)
        console.print(f"results written to {output}")
    if not results or len(errors) == len(results):
        raise fail("no image could be classified", "check the paths and that the files are images")


def export(
    run_dir: Path = typer.Argument(
        ..., help="Run directory from 'fungalzsl train', or the output folder of 'fungalzsl run'."
    ),
    out: Path = typer.Option(..., "--out", help="Directory for image_encoder.onnx and classifier.json."),
    opset: int = typer.Option(17, help="ONNX opset version."),
) -> None:
    """Export the image tower and class embeddings to ONNX, for prediction without torch.

    'fungalzsl predict OUT IMAGES...' then runs on onnxruntime."""
    from fungalzsl.predict.onnx import export_onnx

    path = export_onnx(run_dir, out, opset=opset)
    typer.echo(f"exported {path} and {path.parent / 'classifier.json'}")
