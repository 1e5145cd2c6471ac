"""Training settings: the ``train:`` section of a preset (configs/cpu-default.yaml, configs/paper.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fungalzsl.config import load_section, validate


class TrainConfig(BaseModel):
    """Every knob of ``fungalzsl train``; CLI options override the preset's values."""

    model_config = ConfigDict(extra="forbid")

    model: str = "lite"
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=2, description="global batch (split over DDP ranks)")
    lr: float = Field(1e-3, gt=0, description="peak lr of the heads and temperature")
    backbone_lr: float | None = Field(
        None, gt=0, description="peak lr of unfrozen layer groups (default: lr)"
    )
    weight_decay: float = Field(0.1, ge=0)
    warmup_steps: int = Field(20, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    grad_clip: float | None = Field(1.0, gt=0)
    grad_accum: int = Field(1, ge=1)
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    grad_checkpointing: bool = False
    loss: Literal["multi_positive", "clip", "sigmoid"] = Field(
        "multi_positive",
        description="contrastive loss; sigmoid = SigLIP's pairwise loss, same-class positives",
    )
    objective: Literal["contrastive", "catlip"] = Field(
        "contrastive", description="catlip: BCE over the descriptions' vocabulary (train/catlip.py)"
    )
    catlip_min_count: int = Field(
        2, ge=1, description="catlip: keep words in at least this many descriptions"
    )
    captions: Literal["none", "grounded"] = Field(
        "none",
        description="grounded: also pair images with their own captions (DATA/captions.jsonl, "
        "fungalzsl generate --captions); every caption of an image and every description of its class "
        "are its positives",
    )
    caption_share: float = Field(
        0.5, ge=0, le=1, description="grounded: chance that an image's pair is one of its captions"
    )
    unfreeze_every: int = Field(5, ge=0, description="epochs per unfreezing stage; 0 = never")
    unfreeze_max: dict[Literal["image", "text"], int | None] = Field(default_factory=dict)
    unfreeze_start: dict[Literal["image", "text"], int] = Field(default_factory=dict)
    cache: bool = Field(True, description="compute frozen prefixes once per unfreeze stage")
    patience: int | None = Field(None, ge=1, description="stop after this many epochs without val gain")
    seed: int = 0
    device: str = "auto"
    num_workers: int = Field(0, ge=0)
    embed_dim: int = Field(256, ge=8, description="shared space size (lite only)")
    image_size: int | None = Field(None, ge=16, description="lite input size (default 224)")
    eval_batch_size: int = Field(128, ge=1)
    log_every: int = Field(10, ge=1)
    tensorboard: bool = False
    wise_ft: list[float] = Field(default_factory=list, description="WiSE-FT alphas to report on val")
    wise_ft_alpha: float | None = Field(None, ge=0, le=1, description="save weights interpolated at this α")
    progress: bool = True


def resolve_config(
    config: TrainConfig | dict | str | Path | None, overrides: dict[str, Any] | None
) -> TrainConfig:
    """A TrainConfig from a preset path/name, a dict or an object, with non-None overrides applied."""
    if isinstance(config, TrainConfig):
        base = config.model_dump()
    elif isinstance(config, dict):
        base = dict(config)
    else:
        base = load_section(config, "train")
    base.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return validate(TrainConfig, base, f"train settings ({config or 'defaults'})")
