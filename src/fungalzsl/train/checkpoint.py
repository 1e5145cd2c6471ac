"""Resume state in ``RUN/last/``: weights, optimiser moments and RNG as safetensors, the rest as JSON.
Never pickles. The directory is written beside and swapped in, so a crash leaves the previous one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from fungalzsl.errors import fail
from fungalzsl.io import atomic_write_json, fsync_dir
from fungalzsl.models.base import TwoTowerModel
from fungalzsl.models.registry import state_for_saving
from fungalzsl.rundir import LAST_DIR, LAST_STATE_FILE, MODEL_FILE
from fungalzsl.tensorfile import load_tensors, save_tensors


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Flatten AdamW's state into named tensors plus JSON-able param-group hyperparameters."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"opt.{idx}.{k}"] = t.detach().cpu().contiguous().clone()
    groups = [
        {k: v for k, v in g.items() if k != "params"} | {"n_params": len(g["params"])}
        for g in sd["param_groups"]
    ]
    return tensors, groups


def restore_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]
) -> None:
    sd = opt.state_dict()
    if len(sd["param_groups"]) != len(groups) or any(
        len(g["params"]) != s["n_params"] for g, s in zip(sd["param_groups"], groups)
    ):
        raise fail(
            "the resume state does not match this model's unfreezing layout",
            "start a fresh run with a new --out",
        )
    state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = t
    for g, saved in zip(sd["param_groups"], groups):
        g.update({k: v for k, v in saved.items() if k != "n_params"})
    sd["state"] = state
    opt.load_state_dict(sd)


def save_last(
    run: Path,
    model: TwoTowerModel,
    opt: torch.optim.Optimizer,
    state: dict[str, Any],
    extra: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write RUN/last atomically (new dir beside, then swap). ``extra``: trained tensors that live outside
    the model (the sigmoid loss's bias, the CatLIP head), stored as ``extra.NAME`` beside the optimiser.

    Durable before it counts: each file is fsynced, then the new directory, and after the swap the run
    directory, so a power loss leaves the previous last/ or this one whole, never empty files."""
    new, old, last = run / ".last-new", run / ".last-old", run / LAST_DIR
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    save_tensors(new / MODEL_FILE, state_for_saving(model), metadata={"spec": model.spec})
    tensors, groups = optimizer_tensors(opt)
    tensors.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in (extra or {}).items()})
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    save_tensors(new / "optimizer.safetensors", tensors)
    atomic_write_json(new / LAST_STATE_FILE, {**state, "param_groups": groups})
    if last.exists():
        shutil.rmtree(old, ignore_errors=True)
        last.rename(old)
    new.rename(last)
    fsync_dir(run)
    shutil.rmtree(old, ignore_errors=True)


def find_last(run: Path) -> Path | None:
    """RUN/last, or the previous copy if a crash hit between the two renames."""
    for d in (run / LAST_DIR, run / ".last-old"):
        if (d / LAST_STATE_FILE).is_file() and (d / MODEL_FILE).is_file():
            return d
    return None


def load_last(last: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    try:
        state = json.loads((last / LAST_STATE_FILE).read_text())
        tensors = load_tensors(last / "optimizer.safetensors", "resume state")
    except (OSError, ValueError) as e:
        raise fail(
            f"resume state in {last} is unreadable ({e})", "delete it to restart, or use a new --out"
        ) from None
    return state, tensors


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])


def extra_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``extra`` tensors of a resume checkpoint, under their own names."""
    return {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
