"""The optimiser side of progressive unfreezing: AdamW holds the heads, the temperature and the
objective's own tensors from the start, and a layer group's parameters from the epoch it unfreezes;
the learning rate follows a linear warm-up and a cosine decay, set per step on every group."""

from __future__ import annotations

import math
from typing import Any

import torch

from fungalzsl.models.base import TwoTowerModel
from fungalzsl.train.distributed import average_gradients
from fungalzsl.train.unfreeze import trainable_groups

HEAD_GROUP = "head"  # heads, temperature and the objective's tensors; layer groups are "image.17" etc.


def param_groups(name: str, params: list[torch.nn.Parameter], lr: float, wd: float) -> list[dict[str, Any]]:
    """CLIP's convention: no weight decay on gains, biases and the temperature (1-D tensors)."""
    decay = [p for p in params if p.ndim >= 2]
    other = [p for p in params if p.ndim < 2]
    out = [{"params": decay, "weight_decay": wd, "base_lr": lr, "name": f"{name}/decay"}] if decay else []
    return out + (
        [{"params": other, "weight_decay": 0.0, "base_lr": lr, "name": f"{name}/no_decay"}] if other else []
    )


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to ``min_ratio`` of the peak:

    f(s) = (s+1)/W for s < W, else r + (1-r)·½(1 + cos(π·min(1, (s-W)/(T-W))))."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def build_optimizer(head_params: list[torch.nn.Parameter], lr: float, wd: float) -> torch.optim.AdamW:
    """AdamW over the always-trained tensors (``head`` groups); layer groups join as they unfreeze."""
    return torch.optim.AdamW(
        param_groups(HEAD_GROUP, head_params, lr, wd),
        lr=lr,
        foreach=True,  # one kernel per group; the CPU default loops over tensors in Python
    )


def add_unfrozen_groups(
    opt: torch.optim.Optimizer, model: TwoTowerModel, unfrozen: dict[str, int], lr: float, wd: float
) -> None:
    """Give ``opt`` the param groups of every layer group trainable under ``unfrozen`` that it does not
    hold yet, top group first per tower. Fresh epochs and the resume replay both come through here, so
    a resumed optimiser gets its groups in the order the original run added them."""
    held = {g["name"].split("/")[0] for g in opt.param_groups}
    for name, params in trainable_groups(model, unfrozen):
        if name not in held:
            for group in param_groups(name, params, lr, wd):
                opt.add_param_group(group)


def autocast_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The AMP dtype (CUDA only): bf16 where supported unless ``fp16`` is asked for; None = fp32."""
    if device.type != "cuda" or amp == "off":
        return None
    return torch.float16 if amp == "fp16" or not torch.cuda.is_bf16_supported() else torch.bfloat16


def optimizer_step(
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    lr_scale: float,
    grad_clip: float | None,
    world: int,
) -> None:
    """One AdamW step at ``lr_scale`` × each group's peak lr on the accumulated gradients: averaged
    over ranks, unscaled (fp16), clipped to norm ``grad_clip``; then the gradients are cleared."""
    for g in opt.param_groups:
        g["lr"] = g["base_lr"] * lr_scale
    trainable = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
    if world > 1:
        average_gradients(trainable, world)
    scaler.unscale_(opt)
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)
