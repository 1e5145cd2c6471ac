"""Processes of a run: one, or one per slot under ``torchrun`` (DDP). Every rank computes the global
loss (features are gathered in ``train.loss``); gradients are then averaged here by hand, because the
models are called through ``encode_*``/``*_head`` and not ``forward``, which DDP's hooks need."""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist

from fungalzsl.errors import fail


def setup_distributed(device_opt: str) -> tuple[int, int, torch.device]:
    """(rank, world, device). torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device_opt in ("auto", "cuda")
    if device_opt not in ("auto", "cuda", "cpu") and not device_opt.startswith("cuda:"):
        raise fail(f"unknown device '{device_opt}'", "use auto, cpu, cuda or cuda:N")
    if device_opt.startswith("cuda") and not torch.cuda.is_available():
        raise fail(f"--device {device_opt} asked for, but no CUDA GPU is visible", "use --device cpu")
    device = torch.device(
        device_opt if device_opt.startswith("cuda:") else (f"cuda:{local}" if cuda else "cpu")
    )
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, (dist.get_world_size() if dist.is_initialized() else 1), device


def average_gradients(params: Iterable[torch.nn.Parameter], world: int) -> None:
    """g ← (1/world) Σ_ranks g for every parameter: what DDP's all-reduce hooks would do."""
    for p in params:
        dist.all_reduce(p.grad)
        p.grad /= world
