"""LiT (``train.lock_text``): the text projection head stays as initialised, the image head trains."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from fungalzsl.errors import FungalError
from fungalzsl.models import build_model
from fungalzsl.train.loop import train_run
from fungalzsl.train.unfreeze import text_head_parameters
from tiny_data import make_dataset, make_descriptions


def test_lock_text_keeps_the_text_head_and_trains_the_image_head(tmp_path):
    data = make_dataset(tmp_path / "data", {"train": 4, "val": 2, "test": 1})
    desc = make_descriptions(tmp_path / "d.jsonl")
    cfg = {"epochs": 1, "batch_size": 6, "unfreeze_max": {"image": 0, "text": 0}, "image_size": 32,
           "progress": False, "lr": 5e-2, "embed_dim": 8, "lock_text": True}  # fmt: skip
    train_run(data, desc, tmp_path / "run", "lite", cfg)
    torch.manual_seed(0)  # the trainer seeds the heads' init with cfg.seed (0) before building
    start = build_model("lite", image_size=32, embed_dim=8).state_dict()
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert all(torch.equal(saved[k], start[k]) for k in saved if k.startswith("text_proj."))
    assert not torch.equal(saved["image_proj.weight"], start["image_proj.weight"])


def test_lock_text_needs_a_separate_text_head():
    class NoHead(torch.nn.Module):
        pass

    with pytest.raises(FungalError, match="lock_text"):
        text_head_parameters(NoHead())  # type: ignore[arg-type]
