"""Training settings: the ``train:`` section of a preset (configs/cpu-default.yaml, configs/paper.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fungalzsl.config import load_section, validate


def _range(v: tuple[float, float] | None, what: str, lo: float, hi: float) -> None:
    if v is not None and not (lo <= v[0] <= v[1] <= hi):
        raise ValueError(f"{what} must be [low, high] with {lo} <= low <= high <= {hi}")


class AugmentConfig(BaseModel):
    """Random training views (train/augment.py): ``augment: {}`` in a preset turns them on with these
    defaults; ``augment: null`` (the default, and the paper's setup) trains on the eval transform."""

    model_config = ConfigDict(extra="forbid")

    crop_scale: tuple[float, float] | None = Field(
        (0.35, 1.0), description="random resized crop: area fraction range; null = no crop"
    )
    crop_ratio: tuple[float, float] = Field((0.75, 4 / 3), description="crop aspect ratio range")
    flip: bool = Field(True, description="random flips and quarter turns")
    jitter: float = Field(0.4, ge=0, le=1, description="brightness/contrast/saturation factor 1 ± jitter")
    hue: float = Field(0.1, ge=0, le=0.5, description="hue shift ± hue (fraction of the colour wheel)")
    greyscale: float = Field(0.2, ge=0, le=1, description="probability of a greyscale view")
    blur: float = Field(0.3, ge=0, le=1, description="probability of a Gaussian blur")
    blur_sigma: tuple[float, float] = Field((0.1, 2.0), description="blur radius range, pixels")
    noise: float = Field(0.3, ge=0, le=1, description="probability of additive Gaussian noise")
    noise_sd: tuple[float, float] = Field((0.01, 0.08), description="noise sd range, fraction of 255")
    views: int = Field(4, ge=1, le=64, description="augmented views per training image (cached once)")

    @model_validator(mode="after")
    def _check_ranges(self) -> AugmentConfig:
        _range(self.crop_scale, "crop_scale", 0.01, 1.0)
        _range(self.crop_ratio, "crop_ratio", 0.1, 10.0)
        _range(self.blur_sigma, "blur_sigma", 0.0, 50.0)
        _range(self.noise_sd, "noise_sd", 0.0, 1.0)
        return self


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
    lock_text: bool = Field(
        False,
        description="LiT: the text projection head does not train either, so with unfreeze_max text 0 "
        "the text side stays as initialised (lite: MiniLM through a fixed random projection)",
    )
    unfreeze_every: int = Field(5, ge=0, description="epochs per unfreezing stage; 0 = never")
    unfreeze_max: dict[Literal["image", "text"], int | None] = Field(default_factory=dict)
    unfreeze_start: dict[Literal["image", "text"], int] = Field(default_factory=dict)
    cache: bool = Field(True, description="compute frozen prefixes once per unfreeze stage")
    augment: AugmentConfig | None = Field(None, description="random training views; null = off (paper)")
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
    wise_ft_scope: Literal["all", "towers"] = Field(
        "all", description="towers: interpolate the towers only, keep the trained heads and temperature"
    )
    progress: bool = True
    adapter: Literal["none", "lora"] = Field(
        "none", description="lora: train peft LoRA adapters (and the heads) instead of whole layer groups"
    )
    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0, description="LoRA scaling is alpha / rank")
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_targets: dict[Literal["image", "text"], list[str]] = Field(
        default_factory=dict,
        description="module-name suffixes per tower ('image=a+b,text=c' on the CLI); a tower not named "
        "gets the backend's defaults, an empty list none",
    )
    lora_unfreeze: bool = Field(
        False,
        description="lora: a group's adapters join on the unfreezing schedule (default: all train from epoch 0)",
    )

    @field_validator("lora_targets", mode="before")
    @classmethod
    def _parse_targets(cls, value: Any) -> Any:
        return parse_lora_targets(value) if isinstance(value, str) else value


def parse_lora_targets(text: str) -> dict[str, list[str]]:
    """'image=mlp.c_fc+mlp.c_proj,text=none' -> {"image": ["mlp.c_fc", "mlp.c_proj"], "text": []}."""
    out: dict[str, list[str]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        tower, sep, names = item.partition("=")
        if not sep or not tower.strip():
            raise ValueError(f"'{item}' is not TOWER=NAME[+NAME...] (e.g. image=mlp.c_fc+mlp.c_proj)")
        listed = [n.strip() for n in names.split("+") if n.strip() and n.strip() != "none"]
        out.setdefault(tower.strip(), []).extend(listed)
    return out


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
