"""``fungalzsl adapt``, ``fungalzsl fewshot`` and ``fungalzsl baseline``: few-shot adaptation from a lab's own
labelled images, and the baselines that need no fine-tuning."""

from __future__ import annotations

from pathlib import Path

import typer

from fungalzsl.errors import fail
from fungalzsl.eval.methods import DEFAULT_TEMPLATE

_SHOTS_HELP = (
    "Labelled images: class folders DIR/<class>/*.png (a sub-folder DIR/<class>/<source>/ names the source) "
    "or a flat folder with labels.jsonl (file, label, optional source)."
)


def adapt(
    run_dir: Path = typer.Argument(
        ..., help="Run directory written by 'fungalzsl train' (RUN/run after 'fungalzsl run')."
    ),
    shots: Path = typer.Option(..., "--shots", help=_SHOTS_HELP),
    out: Path = typer.Option(..., "--out", help="New run directory: the run plus the fitted adapter."),
    method: str = typer.Option(
        "anchored",
        "--method",
        help="anchored (class centroids with the class text as one more shot; measured best on real-dev and a synthetic micrograph set), prototype (class centroids), probe (logistic regression) or tip (Tip-Adapter cache + zero-shot).",
    ),
    features: str = typer.Option(
        "embedding",
        "--features",
        help="What the adapter fits on: embedding (the run's image embedding, the text's space), backbone "
        "(the image tower's pooled features before the projection; not with anchored) or both (the two "
        "concatenated, equal weight; anchored puts the text on the embedding half).",
    ),
    views: int = typer.Option(
        1, "--views", help="1 (centre crop) or 8 (mean over flips and rotations: 8 forward passes per image)."
    ),
    batch_size: int = typer.Option(32, min=1, help="Images per forward pass."),
    device: str = typer.Option("cpu", help="Torch device, e.g. cpu or cuda."),
) -> None:
    """Adapt a run to a lab's images from a few labelled examples per class, without training.

    OUT is a run directory that predict, evaluate, serve and Classifier.load accept like any run;
    'fungalzsl export' refuses it (its ONNX format holds the zero-shot classifier only)."""
    from fungalzsl.fewshot.adapt import adapt_run
    from fungalzsl.runtime import configure_torch_threads

    configure_torch_threads()
    adapter = adapt_run(run_dir, shots, out, method=method, batch_size=batch_size, device=device,
                        features=features, views=views)  # fmt: skip
    counts = ", ".join(f"{c} {n}" for c, n in adapter.info["shots_per_class"].items())
    params = ", ".join(f"{k}={v:g}" for k, v in adapter.params.items())
    typer.echo(f"adapted run written to {out} ({method} on {features}, {views} view{'s' * (views > 1)}; "
               f"{params}; shots: {counts})")  # fmt: skip


def _parse_ints(text: str, option: str, example: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise fail(f"{option} {text!r} is not a list of integers", f"e.g. {option} {example}") from None


def _parse_ks(text: str) -> list[int]:
    ks = _parse_ints(text, "--k", "1,2,5,10")
    if not ks or min(ks) < 1:
        raise fail(f"--k {text!r} must list positive shot counts", "k = 0 (zero-shot) is always reported")
    return ks


def fewshot(
    run_dir: Path = typer.Argument(..., help="Run directory written by 'fungalzsl train'."),
    data: Path = typer.Option(..., "--data", help=_SHOTS_HELP),
    k: str = typer.Option(
        "1,2,5,10", "--k", help="Shots per class, comma separated (k = 0, zero-shot, is always reported)."
    ),
    repeats: int = typer.Option(10, "--repeats", min=1, help="Random draws per k."),
    out: Path = typer.Option(..., "--out", help="Folder for results.json, results.md and fewshot.png."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draws."),
    methods: str = typer.Option(
        "zeroshot,tip,probe,prototype,anchored",
        "--methods",
        help="Methods to score, comma separated (zeroshot: the run's classifier on the same query images).",
    ),
    features: str = typer.Option(
        "embedding",
        "--features",
        help="Feature kinds to compare, comma separated: embedding, backbone, both.",
    ),
    views: str = typer.Option("1", "--views", help="View counts to compare, comma separated: 1, 8."),
    batch_size: int = typer.Option(32, min=1, help="Images per forward pass."),
    device: str = typer.Option("cpu", help="Torch device, e.g. cpu or cuda."),
) -> None:
    """Few-shot protocol: k shots per class drawn from DATA, the rest scored, mean and 95% CI per k.

    A class with fewer than k + 1 images gives all but one of them as shots (the row says 'capped').
    Every --features x --views pair is an arm scored on the same draws (anchored: not on backbone alone)."""
    from fungalzsl.fewshot.report import fewshot_run
    from fungalzsl.runtime import configure_torch_threads

    configure_torch_threads()
    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    kinds = [f.strip() for f in features.split(",") if f.strip()] or ["embedding"]
    counts = _parse_ints(views, "--views", "1,8") or [1]
    results = fewshot_run(run_dir, data, out, _parse_ks(k), repeats, seed, chosen, batch_size, device,
                          kinds, counts)  # fmt: skip
    for kk in results["ks"]:
        row = next(r for r in results["results"] if r["k"] == kk)
        if row["capped"]:
            shots = ", ".join(f"{c} {n}" for c, n in row["shots_per_class"].items())
            typer.secho(f"k={kk}: a class has fewer than {kk + 1} images; shots capped ({shots})",
                        fg=typer.colors.YELLOW, err=True)  # fmt: skip
    typer.echo((Path(out) / "results.md").read_text())


def baseline(
    model: str = typer.Argument(
        ...,
        metavar="MODEL_SPEC",
        help="A model spec: lite, openclip:ARCH@TAG, hf:ID_OR_DIR (frozen, pretrained).",
    ),
    data: Path = typer.Option(
        ..., "--data", help="Dataset directory (DIR/SPLIT/CLASS/*.png): the support images come from --split."
    ),
    method: str = typer.Option(
        "prototype",
        "--method",
        help="zeroshot (the text classifier alone), prototype (class centroids), probe (logistic "
        "regression), tip (Tip-Adapter: support cache + zero-shot text; training-free) or anchored "
        "(centroids with the class text as one more support image).",
    ),
    out: Path = typer.Option(
        ..., "--out", help="New run directory (evaluate, predict, serve, table use it)."
    ),
    split: str = typer.Option(
        "train", "--split", help="Split the support images come from; 'none' for DIR/CLASS/*."
    ),
    support_per_class: int = typer.Option(
        64,
        "--support-per-class",
        min=1,
        help="At most this many support images per class, drawn with --seed.",
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the support draw and of lite's random projection heads."
    ),
    descriptions: Path | None = typer.Option(
        None, "--descriptions", help="Descriptions for the class text (default: the template)."
    ),
    template: str = typer.Option(DEFAULT_TEMPLATE, "--template", help="Class text without --descriptions."),
    image_size: int | None = typer.Option(None, "--image-size", help="lite only: input size (default 224)."),
    embed_dim: int | None = typer.Option(
        None, "--embed-dim", help="lite only: projection size (default 256)."
    ),
    batch_size: int = typer.Option(32, min=1, help="Images per forward pass."),
    device: str = typer.Option("cpu", help="Torch device, e.g. cpu or cuda."),
) -> None:
    """A baseline that needs no fine-tuning: the frozen pretrained model, with a classifier fitted on a
    bounded support set of synthetic training images (or none: zeroshot), as a run directory.

    The run holds no model.safetensors: config.json says "weights": "pretrained" (with the seed and a
    checksum), and every command rebuilds the spec's own weights."""
    from fungalzsl.fewshot.baseline import build_baseline
    from fungalzsl.runtime import configure_torch_threads

    configure_torch_threads()
    options = {k: v for k, v in (("image_size", image_size), ("embed_dim", embed_dim)) if v is not None}
    config = build_baseline(model, data, out, method, split=split, support_per_class=support_per_class, seed=seed,
                            descriptions=descriptions, template=template, model_options=options,
                            batch_size=batch_size, device=device)  # fmt: skip
    counts = ", ".join(f"{c} {n}" for c, n in config["baseline"]["support_per_class"].items()) or "none"
    params = ", ".join(f"{k}={v:g}" for k, v in (config.get("adapter") or {}).get("params", {}).items())
    typer.echo(f"baseline run written to {out} ({method}{'; ' + params if params else ''}; support: {counts}; "
               f"trainable parameters {config['trainable_params']}; peak RSS {config['peak_rss_mb']:.0f} MB)")  # fmt: skip
