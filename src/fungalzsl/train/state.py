"""Where a run stands (:class:`TrainState`), and the resume point it may start from (``RUN/last/``)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fungalzsl.errors import fail
from fungalzsl.rundir import MODEL_FILE
from fungalzsl.train import checkpoint as ckpt
from fungalzsl.train.inputs import TrainInputs


@dataclass
class TrainState:
    """The counters that carry a run from epoch to epoch; ``RUN/last/state.json`` records them.

    The best epoch has the highest score ``[val Recall@1, val mean p(true class)]`` compared as a list
    (Recall@1 saturates on easy data, so ties go to the more confident epoch); without a val split the
    score is ``[-(sum of the epoch's step losses), 0]``."""

    epoch: int = -1  # the last finished epoch
    step: int = 0  # optimiser steps taken: the lr schedule's position
    best: list[float] = field(default_factory=lambda: [-math.inf, -math.inf])
    best_epoch: int = -1
    stale: int = 0  # epochs since the best one
    unfrozen: dict[str, int] | None = None  # trainable top groups per tower in the current stage
    stopped: bool = False  # ``patience`` epochs without a gain: no more epochs

    def end_epoch(self, epoch: int, score: list[float], patience: int | None) -> bool:
        """Record finished ``epoch`` with ``score``; True when it is the new best."""
        improved = score > self.best
        if improved:
            self.best, self.best_epoch, self.stale = score, epoch, 0
        else:
            self.stale += 1
        self.epoch = epoch
        self.stopped = bool(patience and self.stale >= patience)
        return improved

    def to_json(self, identity: dict[str, Any]) -> dict[str, Any]:
        """state.json's content: the run's ``identity`` (model, classes, descriptions hash) first."""
        return {
            **identity, "epoch": self.epoch, "step": self.step, "best": self.best,
            "best_epoch": self.best_epoch, "stale": self.stale, "unfrozen": self.unfrozen,
            "stopped": self.stopped,
        }  # fmt: skip


def run_identity(model_spec: str, inputs: TrainInputs) -> dict[str, Any]:
    """What a resumed run must share with the one it continues."""
    return {
        "model": model_spec, "classes": inputs.classes, "descriptions_hash": inputs.desc.hash,
        "data_fingerprint": data_fingerprint(inputs),
    }  # fmt: skip


def data_fingerprint(inputs: TrainInputs) -> str:
    """The sha256 (16 hex digits) of the sorted (split-relative path, size in bytes) of every train and
    val image: a changed, added or removed image changes it. Cheap (one ``stat`` per file, no
    decoding), so a resumed run can check that it continues on the images it started on."""
    files = []
    for split, images in (("train", inputs.train_set), ("val", inputs.val_set)):
        for path in images.paths if images is not None else ():
            try:
                size = path.stat().st_size
            except OSError:
                size = -1  # unreadable now: the first pass skips it, as it would have then
            files.append([split, os.fsdecode(path.relative_to(inputs.data / split)), size])
    text = json.dumps(sorted(files), ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


@dataclass
class ResumePoint:
    """``RUN/last/``, read once: state.json and the optimiser/RNG/extra tensors."""

    dir: Path
    saved: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    def state(self, epochs: int) -> TrainState:
        """The TrainState to continue from. A run that had stopped early skips to the end (``epochs``
        − 1 counts as its last epoch), so resuming it only re-finishes it."""
        s = self.saved
        last = epochs - 1 if s.get("stopped") else s["epoch"]
        return TrainState(epoch=last, step=s["step"], best=s["best"], best_epoch=s["best_epoch"],
                          stale=s["stale"])  # fmt: skip


def open_resume(run: Path, resume: bool, identity: dict[str, Any]) -> ResumePoint | None:
    """The resume point of ``run`` when ``resume`` (None: a fresh start).

    Refuses to start afresh over a run that finished an epoch (one that never did has nothing to
    lose); to resume a run that is not there or never finished an epoch (no ``last/``); and to resume
    a run of another model, other classes, another description set or other images. Runs saved before
    the data fingerprint existed resume without that check."""
    if not resume:
        if ckpt.find_last(run) is not None or (run / MODEL_FILE).is_file():
            raise fail(
                f"{run} already holds a training run", "pass --resume to continue it, or choose another --out"
            )
        return None
    last = ckpt.find_last(run)
    if last is None:
        what = "does not exist" if not run.exists() else "has no resume state (last/: no epoch finished)"
        raise fail(f"cannot resume: {run} {what}", "check --out, or drop --resume to start a new run there")
    saved, tensors = ckpt.load_last(last)
    if any(saved.get(k) != v for k, v in identity.items() if k != "data_fingerprint"):
        raise fail(
            f"{run} was trained with model {saved.get('model')} on other classes or descriptions",
            "resume with the same --model, --data and --descriptions, or use a new --out",
        )
    if saved.get("data_fingerprint", identity.get("data_fingerprint")) != identity.get("data_fingerprint"):
        raise fail(
            f"{run} was trained on other images (same classes, different files or sizes under train/ or val/)",
            "resume with the --data the run started on, or use a new --out",
        )
    return ResumePoint(last, saved, tensors)


def can_resume(run: Path) -> bool:
    """Whether ``run`` holds a resume point (``last/``) that ``--resume`` can continue from."""
    return ckpt.find_last(run) is not None
