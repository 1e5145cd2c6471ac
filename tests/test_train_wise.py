"""WiSE-FT weights: ``scope="all"`` mixes every float tensor, ``scope="towers"`` keeps the trained
projection heads and temperature (lite's θ0 heads are random) and mixes the rest."""

from __future__ import annotations

import pytest
import torch

from fungalzsl.models import build_model
from fungalzsl.train.evaluate import wise_ft_weights
from fungalzsl.train.settings import resolve_config


def test_towers_scope_keeps_the_trained_heads_and_mixes_the_rest() -> None:
    torch.manual_seed(0)
    model = build_model("lite", image_size=32, embed_dim=8)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    theta1 = {k: v + 1.0 if v.is_floating_point() else v for k, v in theta0.items()}
    towers = wise_ft_weights(model, theta0, theta1, 0.25, "towers")
    mixed = wise_ft_weights(model, theta0, theta1, 0.25, "all")
    for k in ("image_proj.weight", "text_proj.bias", "logit_scale"):
        torch.testing.assert_close(towers[k], theta1[k])
        torch.testing.assert_close(mixed[k], theta0[k] + 0.25)
    for k in ("visual.conv_head.weight", "visual.blocks.6.0.conv_pw.weight"):
        torch.testing.assert_close(towers[k], theta0[k] + 0.25)
    assert towers["visual.bn2.num_batches_tracked"].dtype == torch.int64


def test_scope_is_validated() -> None:
    from fungalzsl.errors import FungalError

    assert resolve_config({"wise_ft_scope": "towers"}, None).wise_ft_scope == "towers"
    with pytest.raises(FungalError, match="wise_ft_scope"):
        resolve_config({"wise_ft_scope": "heads"}, None)


def test_wise_ft_alpha_zero_saves_the_start_model(tmp_path) -> None:
    """α = 0 is a valid WiSE-FT weight (the model as built); a truthiness check used to skip keeping
    θ0 for it, so the run silently saved the fine-tuned weights instead."""
    from safetensors.torch import load_file

    from fungalzsl.train.loop import train_run
    from tiny_data import make_dataset, make_descriptions

    data = make_dataset(tmp_path / "data", {"train": 4, "val": 2})
    desc = make_descriptions(tmp_path / "d.jsonl")
    cfg = {"epochs": 1, "batch_size": 6, "unfreeze_max": {"image": 1, "text": 0}, "image_size": 32,
           "progress": False, "lr": 5e-3, "wise_ft_alpha": 0.0, "embed_dim": 8}  # fmt: skip
    train_run(data, desc, tmp_path / "run", "lite", cfg)
    torch.manual_seed(0)  # the trainer seeds the heads' init with cfg.seed (0) before building
    start = build_model("lite", image_size=32, embed_dim=8).state_dict()
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    tuned = load_file(str(tmp_path / "run" / "model_finetuned.safetensors"))
    moved = [k for k in saved if saved[k].is_floating_point() and not torch.equal(tuned[k], start[k])]
    assert moved  # training changed something, and α = 0 undid all of it
    assert all(torch.equal(saved[k], start[k]) for k in moved)
