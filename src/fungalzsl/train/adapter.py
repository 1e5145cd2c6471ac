"""Training with LoRA adapters (``adapter: lora``): attach them to the built model, and the unfreezing
limits they imply. The peft mechanics live in :mod:`fungalzsl.models.lora`; the rest of the trainer
sees an adapted layer group as one whose trainable parameters are its adapters (``train.unfreeze``).

Two schedules (docs/training.md, "LoRA"): by default every adapted group trains from epoch 0 (the
adapters replace progressive unfreezing: the schedule's start and maximum are the adapted depth);
with ``lora_unfreeze`` the adapters join group by group on the usual unfreezing schedule."""

from __future__ import annotations

import resource
from typing import Any

import torch

from fungalzsl.models.base import TOWERS, TwoTowerModel
from fungalzsl.models.lora import adapted_depth, add_lora, is_adapted
from fungalzsl.train.settings import TrainConfig


def attach_adapter(model: TwoTowerModel, cfg: TrainConfig) -> dict[str, Any] | None:
    """Inject the configured adapters into ``model`` (None: ``adapter: none``, nothing changes)."""
    if cfg.adapter == "none":
        return None
    return add_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, dict(cfg.lora_targets))


def unfreeze_settings(model: TwoTowerModel, cfg: TrainConfig) -> tuple[dict[str, int | None], dict[str, int]]:
    """The (maximum, start) per tower the objective's limits apply to: the settings', or with adapters
    the adapted depth (all at once by default; capped by ``unfreeze_max`` with ``lora_unfreeze``)."""
    if not is_adapted(model):
        return dict(cfg.unfreeze_max), dict(cfg.unfreeze_start)
    depth = adapted_depth(model)
    if not cfg.lora_unfreeze:
        return dict(depth), dict(depth)
    cap = {
        t: depth[t] if cfg.unfreeze_max.get(t) is None else min(depth[t], cfg.unfreeze_max[t]) for t in TOWERS
    }
    return cap, dict(cfg.unfreeze_start)  # type: ignore[arg-type]


def footprint(opt: torch.optim.Optimizer, model: TwoTowerModel, device: torch.device) -> dict[str, Any]:
    """What the run cost, for config.json and ``fungalzsl table``: the tensors AdamW trained (by the last
    stage), all of the model's, and the process's peak resident memory (and CUDA's peak allocation)."""
    out: dict[str, Any] = {
        "trainable_params": sum(p.numel() for g in opt.param_groups for p in g["params"]),
        "total_params": sum(p.numel() for p in model.parameters()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
    }
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out
