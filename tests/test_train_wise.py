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
