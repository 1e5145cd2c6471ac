"""``fungalzsl train``: contrastive fine-tuning with progressive unfreezing."""

from __future__ import annotations

from pathlib import Path

import typer

from fungalzsl.models import SPEC_HELP

# The --adapter lora options (docs/training.md, "LoRA"), defined here so that train() stays readable.
ADAPTER = typer.Option(
    None,
    "--adapter",
    help="none, or lora: train peft LoRA adapters and the heads, base weights frozen (docs/training.md).",
    show_default=False,
)
LORA_RANK = typer.Option(None, "--lora-rank", help="LoRA rank r (8).", show_default=False)
LORA_ALPHA = typer.Option(
    None, "--lora-alpha", help="LoRA alpha; scaling = alpha / r (16).", show_default=False
)
LORA_DROPOUT = typer.Option(
    None, "--lora-dropout", help="Dropout on the LoRA branch (0).", show_default=False
)
LORA_TARGETS = typer.Option(
    None,
    "--lora-targets",
    help="Layers to adapt, as module-name suffixes per tower: image=A+B,text=C ('none': no layer; "
    "an unnamed tower gets the backend's defaults).",
    show_default=False,
)
LORA_UNFREEZE = typer.Option(
    False,
    "--lora-unfreeze",
    help="With --adapter lora: adapters join group by group on the unfreezing schedule "
    "(default: all train from epoch 0).",
)


def train(
    data: Path = typer.Option(
        ..., "--data", "-d", help="Dataset directory with train/ (and val/) ImageFolder splits."
    ),
    descriptions: Path = typer.Option(
        ..., "--descriptions", help="Description set (JSONL with 'class' and 'text')."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Run directory to write (checkpoints, config, metrics)."
    ),
    model: str = typer.Option(
        None, "--model", "-m", help=f"Model spec: {SPEC_HELP} (preset: lite).", show_default=False
    ),
    config: str = typer.Option(
        "cpu-default",
        "--config",
        "-c",
        help="Preset name (cpu-default, paper) or a YAML file with a 'train:' section.",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from RUN/last/ (same model, classes, descriptions, images)."
    ),
    epochs: int = typer.Option(None, "--epochs", help="Epochs (preset).", show_default=False),
    batch_size: int = typer.Option(
        None, "--batch-size", "-b", help="Global batch size (preset).", show_default=False
    ),
    lr: float = typer.Option(
        None, "--lr", help="Peak lr of heads and temperature (preset).", show_default=False
    ),
    backbone_lr: float = typer.Option(
        None, "--backbone-lr", help="Peak lr of unfrozen layers (preset).", show_default=False
    ),
    unfreeze_every: int = typer.Option(
        None,
        "--unfreeze-every",
        help="Unfreeze one more layer group per tower every N epochs (0: never).",
        show_default=False,
    ),
    loss: str = typer.Option(
        None,
        "--loss",
        help="multi_positive (paper Eq. 7-9), clip, or sigmoid (SigLIP's pairwise loss).",
        show_default=False,
    ),
    objective: str = typer.Option(
        None,
        "--objective",
        help="contrastive, or catlip (BCE over the descriptions' vocabulary; docs/training.md).",
        show_default=False,
    ),
    device: str = typer.Option(
        None, "--device", help="auto, cpu, cuda or cuda:N (auto).", show_default=False
    ),
    amp: str = typer.Option(
        None, "--amp", help="auto, bf16, fp16 or off (CUDA only) (auto).", show_default=False
    ),
    grad_accum: int = typer.Option(
        None, "--grad-accum", help="Micro-batches per optimiser step.", show_default=False
    ),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Recompute frozen layers every step (slow; for checks)."
    ),
    patience: int = typer.Option(
        None, "--patience", help="Early stop after N epochs without val gain.", show_default=False
    ),
    seed: int = typer.Option(
        None, "--seed", help="Seed for init, pairing and order (preset: 0).", show_default=False
    ),
    workers: int = typer.Option(
        None, "--workers", "-j", help="Image-loading processes (0).", show_default=False
    ),
    wise_ft: float = typer.Option(
        None,
        "--wise-ft",
        help="Save weights interpolated with the start at this alpha (WiSE-FT).",
        show_default=False,
    ),
    tensorboard: bool = typer.Option(
        False, "--tensorboard", help="Also log to RUN/tensorboard (needs tensorboard)."
    ),
    adapter: str = ADAPTER,
    lora_rank: int = LORA_RANK,
    lora_alpha: float = LORA_ALPHA,
    lora_dropout: float = LORA_DROPOUT,
    lora_targets: str = LORA_TARGETS,
    lora_unfreeze: bool = LORA_UNFREEZE,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or epoch lines."),
) -> None:
    """Fine-tune a two-tower model on images paired with class descriptions.

    Starts with the pretrained towers frozen (projection heads and temperature train) and unfreezes one more layer group per tower every --unfreeze-every epochs, from the top. Frozen layers are computed once per stage and cached.

    Writes RUN/model.safetensors (best val Recall@1; merged with --adapter lora, the adapter beside it), RUN/last/ (resume state), config.json, metrics.jsonl and class_embeddings.safetensors. Unreadable images are skipped and listed (warning, config.json "skipped_images").

    Multi-GPU or multi-process: torchrun --nproc_per_node=N -m fungalzsl train ...
    """
    from fungalzsl.train.loop import train_run

    overrides = dict(
        epochs=epochs, batch_size=batch_size, lr=lr, backbone_lr=backbone_lr, unfreeze_every=unfreeze_every,
        loss=loss, objective=objective, device=device, amp=amp, grad_accum=grad_accum, patience=patience,
        seed=seed, num_workers=workers, wise_ft_alpha=wise_ft, tensorboard=tensorboard or None,
        cache=False if no_cache else None, progress=False if quiet else None, adapter=adapter,
        lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout, lora_targets=lora_targets,
        lora_unfreeze=lora_unfreeze or None,
    )  # fmt: skip
    result = train_run(data, descriptions, out, model, config, resume=resume, overrides=overrides)
    if not quiet:
        typer.echo(summary_line(result, out))


def summary_line(result: dict, out: Path) -> str:
    """The line ``train`` ends with: model, wall time, best val Recall@1 and where the run is."""
    val = result.get("val_recall@1")
    val_s = (
        f"best val Recall@1 {val:.4f} (epoch {result['best_epoch']})" if val is not None else "no val split"
    )
    return f"trained {result['model']} in {result['train_wall_s']:.0f}s: {val_s}; run in {out}"
