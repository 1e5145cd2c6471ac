"""The run's ``metrics.jsonl`` as the trainer reads it back: epochs counted from 1, the last loss and its floor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fungalzsl.io import read_jsonl
from fungalzsl.rundir import METRICS_FILE


def epochs_from_one(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """metrics.jsonl records with epochs counted from 1, as users see them everywhere. Runs from
    before that counted from 0 (an epoch 0 gives them away); resuming one renumbers its file."""
    if not any(r.get("epoch") == 0 for r in recs):
        return recs
    return [{**r, "epoch": r["epoch"] + 1} if isinstance(r.get("epoch"), int) else r for r in recs]


def final_loss(run: Path) -> dict[str, Any]:
    """config.json's ``final_train_loss`` and ``loss_floor``: the last epoch's mean training loss and
    the mean floor of its batches (None for losses without one), from metrics.jsonl."""
    epochs = [r for r in read_jsonl(run / METRICS_FILE) if r.get("type") == "epoch"]
    last = epochs[-1] if epochs else {}
    return {"final_train_loss": last.get("train_loss"), "loss_floor": last.get("train_loss_floor")}
