"""``fungalzsl generate`` and ``fungalzsl generate import-fungalzsl``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from fungalzsl.errors import fail

app = typer.Typer(
    help="Generate the synthetic fungi dataset (spore, hyphae, mycelium), or import the authors' release.",
    invoke_without_command=True,
    epilog=(
        "Examples: fungalzsl generate --out data/fungi  (the paper's 6,000 images at 224 px)  ·  "
        "fungalzsl generate --out data/shift --palette random --noise 0.05  ·  "
        "fungalzsl generate --out data/fungi --resume  ·  "
        "fungalzsl generate --out data/seg --masks  ·  fungalzsl generate --out data/c --captions  ·  "
        "fungalzsl generate --out data/micro --style micrograph  ·  "
        "fungalzsl generate import-fungalzsl train_data.json val_data.json test_data.json "
        "--images DOWNLOAD_DIR --out data/release.  Schema: docs/dataset.md"
    ),
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Mode(str, Enum):
    classes = "classes"
    sequence = "sequence"
    continuum = "continuum"


class Palette(str, Enum):
    paper = "paper"
    random = "random"


class Style(str, Enum):
    paper = "paper"
    micrograph = "micrograph"
    colony = "colony"
    mixed = "mixed"


STYLE_OPTION = typer.Option(
    None,
    "--style",
    help="paper: the paper's drawings; micrograph: microscope photographs of every class; colony: "
    "mycelium as colonies on agar (spore, hyphae as micrographs); mixed: per image paper 25%, "
    "micrograph 50%, colony 25% (preset: paper). See docs/dataset.md#styles.",
    show_default=False,
)


CAPTIONS_OPTION = typer.Option(
    False,
    "--captions/--no-captions",
    help="Also write captions.jsonl: per image 4 grounded captions stating what it shows (counts, sizes, "
    "branching depth, density, coverage, colour), for train.captions: grounded. Images are unchanged.",
)


class Format(str, Enum):
    folder = "folder"
    webdataset = "webdataset"


class RendererName(str, Enum):
    fast = "fast"
    matplotlib = "matplotlib"


@app.callback()
def generate(
    ctx: typer.Context,
    out: Path = typer.Option(
        None, "--out", "-o", help="Output directory (created; must be empty unless --resume/--overwrite)."
    ),
    num_images: int = typer.Option(
        None, "--num-images", "-n", help="Images in total (preset: 6000).", show_default=False
    ),
    size: int = typer.Option(
        None,
        "--size",
        help="Image side in pixels, 16-8192 (preset: 224; the paper's ~2310).",
        show_default=False,
    ),
    seed: int = typer.Option(0, "--seed", help="Master seed; same seed + preset = byte-identical images."),
    workers: int = typer.Option(
        None, "--workers", "-j", help="Processes (default: all cores).", show_default=False
    ),
    preset: str = typer.Option(
        "paper", "--preset", help="Preset name (paper) or a YAML file with a 'generate:' section."
    ),
    mode: Mode = typer.Option(
        Mode.classes,
        "--mode",
        help="classes: images per class; sequence: time-aligned sequences; continuum: train images along the timeline.",
    ),
    palette: Palette = typer.Option(
        None,
        "--palette",
        help="paper: class colour ramps; random: a random ramp per image (breaks the colour shortcut) (preset: paper).",
        show_default=False,
    ),
    style: Style = STYLE_OPTION,
    fmt: Format = typer.Option(
        Format.folder, "--format", help="folder: ImageFolder PNGs; webdataset: ~1000-sample .tar shards."
    ),
    shard: str = typer.Option(
        None,
        "--shard",
        help="Make only part I of N (e.g. 0/4); run every part into the same --out.",
        show_default=False,
    ),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted run in --out (same options)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset in --out."),
    renderer: RendererName = typer.Option(
        RendererName.fast,
        "--renderer",
        help="fast: skia; matplotlib: the authors' slow reference, same geometry.",
    ),
    grayscale: bool = typer.Option(
        None, "--grayscale/--color", help="Convert images to gray (robustness variant).", show_default=False
    ),
    noise: float = typer.Option(
        None, "--noise", help="Gaussian pixel noise σ as a fraction of 255, e.g. 0.05.", show_default=False
    ),
    blur: float = typer.Option(
        None,
        "--blur",
        help="Gaussian blur σ as a fraction of the image side, e.g. 0.004.",
        show_default=False,
    ),
    samples_per_shard: int = typer.Option(
        1000, "--samples-per-shard", help="Samples per WebDataset .tar shard (--format webdataset)."
    ),
    background: str = typer.Option(
        None,
        "--background",
        help="Canvas colour '#rrggbb' or 'random' (preset: #ffffff).",
        show_default=False,
    ),
    masks: bool = typer.Option(
        False,
        "--masks/--no-masks",
        help="Also write per-image segmentation masks: class labels (0 background, 1 spore, 2 hyphae, "
        "3 mycelium) and 16-bit instance ids, in masks/ (or in the shards). Images are unchanged.",
    ),
    captions: bool = CAPTIONS_OPTION,
) -> None:
    """Generate the synthetic fungi dataset: ImageFolder (or WebDataset) + metadata.parquet/jsonl + dataset.json.

    Example: fungalzsl generate --out data/fungi --num-images 6000 --size 224 --seed 0
    """
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise fail("missing --out DIR", "say where to write the dataset, e.g. --out data/fungi")
    from fungalzsl.synth.generate import generate_dataset

    try:
        result = generate_dataset(
            out,
            preset,
            num_images=num_images,
            size=size,
            seed=seed,
            workers=workers,
            mode=mode.value,
            palette=palette.value if palette else None,
            fmt=fmt.value,
            shard=shard,
            resume=resume,
            overwrite=overwrite,
            renderer=renderer.value,
            grayscale=grayscale,
            noise_sd=noise,
            blur_radius=blur,
            background=background,
            samples_per_shard=samples_per_shard,
            masks=masks,
            style=style.value if style else None,
        )
    except KeyboardInterrupt:
        typer.echo(
            f"interrupted; finished images are kept: add --resume to the same command to complete {out}",
            err=True,
        )
        raise typer.Exit(130) from None
    if captions and result.get("complete") is not False:
        captions_command(out)
    _report(result, out, num_images)


@app.command("captions")
def captions_command(
    data: Path = typer.Argument(..., metavar="DIR", help="A dataset written by fungalzsl generate."),
) -> None:
    """Write DIR/captions.jsonl (grounded per-image captions) for an existing generated dataset."""
    from fungalzsl.synth.captions import write_captions

    path = write_captions(data)
    typer.echo(f"wrote {path}", err=True)


def _report(result: dict, out: Path, num_images: int | None) -> None:
    """The result line on stdout (and a note on stderr when sequences rounded the image count)."""
    if result.get("complete") is False:
        typer.echo(
            f"part {result['part'][0]}/{result['part'][1]} done; {result['missing']} images belong to other parts. "
            f"Run them into {out}; the last one writes metadata and dataset.json."
        )
        return
    counts = ", ".join(f"{k} {v['count']}" for k, v in result["splits"].items())
    secs = result.get("seconds")
    took = f" in {secs:.1f} s" if secs is not None else " (already complete)"
    typer.echo(f"wrote {result['num_images']} images ({counts}) to {out}{took}")
    if num_images is not None and result["num_images"] != num_images:
        typer.echo(
            f"note: --mode sequence makes whole sequences, so {result['num_images']} of the "
            f"{num_images} requested images were made",
            err=True,
        )


@app.command("import-fungalzsl")
def import_fungalzsl(
    split_json: list[Path] = typer.Argument(
        ..., metavar="SPLIT_JSON", help="The release's train_data.json, val_data.json, test_data.json."
    ),
    images: Path = typer.Option(
        ..., "--images", help="Folder where you unpacked the Mendeley images (holds Dataset/ or train/...)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory in our layout."),
    link: bool = typer.Option(
        True, "--link/--copy", help="Hard-link images when possible (no extra space), else copy."
    ),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="Import what exists and list what does not, instead of failing."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset in --out."),
) -> None:
    """Convert the authors' released split files (and the images you downloaded) to our dataset layout."""
    from fungalzsl.synth.release import import_release

    result = import_release(
        split_json, images, out, link=link, allow_missing=allow_missing, overwrite=overwrite
    )
    counts = ", ".join(f"{k} {v['count']}" for k, v in result["splits"].items())
    typer.echo(f"imported {result['num_images']} images ({counts}) to {out}")
    if result.get("missing"):
        typer.echo(
            f"{len(result['missing'])} referenced images were missing; see {out}/missing.txt", err=True
        )
