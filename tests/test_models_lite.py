"""The embedded ``lite`` model: the packaged EfficientNet-Lite0 weights load strictly into timm after
renaming, and timm's forward equals an independent functional forward written against the *original*
key names (TF "same" padding, ReLU6, BN eps 1e-3) — which proves the renaming maps every tensor to the
layer it belongs to, not just to a tensor of the right shape."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fungalzsl.models import build_model
from fungalzsl.models.lite import build_efficientnet_lite0, efficientnet_weights_path, rename_lukemelas

STRIDES = (1, 2, 2, 2, 1, 2, 1)  # first block of each stage; EfficientNet-B0/Lite0 layout
REPEATS = (1, 2, 2, 3, 3, 4, 1)


@pytest.fixture(scope="module")
def packaged() -> dict[str, torch.Tensor]:
    return torch.load(efficientnet_weights_path(), map_location="cpu", weights_only=True)


def test_packaged_weights_load_strictly_with_real_statistics(packaged) -> None:
    import timm

    renamed = rename_lukemelas(packaged)
    assert len(packaged) == len(renamed) == 296
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    result = net.load_state_dict(renamed, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # trained running statistics, not the (0, 1) defaults of a fresh BatchNorm
    for key in ("bn1.running_var", "blocks.3.1.bn2.running_var", "bn2.running_mean"):
        stat = net.state_dict()[key]
        assert not torch.allclose(stat, torch.ones_like(stat)) and not torch.allclose(
            stat, torch.zeros_like(stat)
        )


def _same_pad(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """TF 'SAME' padding (extra pixel on the bottom/right), as the original TF-trained weights expect."""
    h = x.shape[-1]
    total = max((math.ceil(h / s) - 1) * s + k - h, 0)
    return F.pad(x, [total // 2, total - total // 2, total // 2, total - total // 2])


def _conv_bn(x, w, bn: str, sd, stride=1, groups=1, act=True):  # type: ignore[no-untyped-def]
    x = F.conv2d(_same_pad(x, w.shape[-1], stride), w, stride=stride, groups=groups)
    x = F.batch_norm(x, sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"], sd[f"{bn}.weight"], sd[f"{bn}.bias"],
                     training=False, eps=1e-3)  # fmt: skip
    return F.relu6(x) if act else x


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """EfficientNet-Lite0 from the lukemelas-style names alone."""
    x = _conv_bn(x, sd["_conv_stem.weight"], "_bn0", sd, stride=2)
    strides = [s if j == 0 else 1 for s, n in zip(STRIDES, REPEATS) for j in range(n)]
    for i, stride in enumerate(strides):
        p, inp = f"_blocks.{i}.", x
        if f"{p}_expand_conv.weight" in sd:
            x = _conv_bn(x, sd[f"{p}_expand_conv.weight"], f"{p}_bn0", sd)
        dw = sd[f"{p}_depthwise_conv.weight"]
        x = _conv_bn(x, dw, f"{p}_bn1", sd, stride=stride, groups=dw.shape[0])
        x = _conv_bn(x, sd[f"{p}_project_conv.weight"], f"{p}_bn2", sd, act=False)
        if stride == 1 and x.shape == inp.shape:
            x = x + inp
    x = _conv_bn(x, sd["_conv_head.weight"], "_bn1", sd)
    return F.linear(x.mean((2, 3)), sd["_fc.weight"], sd["_fc.bias"])


def test_timm_forward_equals_reference_forward_on_original_names(packaged) -> None:
    net = build_efficientnet_lite0(pretrained=True).eval()
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1  # mean=std=0.5 range
    with torch.no_grad():
        ours, ref = net(x), reference_forward(packaged, x)
    torch.testing.assert_close(ours, ref, rtol=1e-3, atol=1e-3)
    assert ours.argmax(1).tolist() == ref.argmax(1).tolist()
    # the check has teeth: a block-level rename slip (swapping two same-shaped blocks) changes the logits
    swapped = dict(packaged)
    for key in [k for k in packaged if k.startswith("_blocks.7.")]:
        swapped[key], swapped[key.replace("_blocks.7.", "_blocks.6.")] = (
            packaged[key.replace("_blocks.7.", "_blocks.6.")],
            packaged[key],
        )
    with torch.no_grad():
        assert not torch.allclose(reference_forward(swapped, x), ours, atol=1e-2)


def test_lite_interface(packaged) -> None:
    model = build_model("lite", image_size=64).eval()
    groups = model.layer_groups()
    assert (
        len(groups["image"]) == 18 and len(groups["text"]) == 7
    )  # stem, 16 blocks, head conv | emb, 6 layers
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        e = model.encode_image(x)
        t = model.encode_text(["spores", "a dense red mycelium"])
        for split in (1, 9, 17, 18):
            torch.testing.assert_close(model.image_head(model.image_trunk(x, split), split), e)
        # MiniLM features: mean pooled, 384-d, as sentence-transformers computes them
        pooled = model.text_trunk(["spores", "a dense red mycelium"], 7)
    assert e.shape == t.shape == (2, 256) and pooled.shape == (2, 384)
    from sentence_transformers import SentenceTransformer

    from fungalzsl.models.lite import minilm_dir

    st = SentenceTransformer(str(minilm_dir()), device="cpu")
    torch.testing.assert_close(
        pooled, st.encode(["spores", "a dense red mycelium"], convert_to_tensor=True), atol=1e-4, rtol=1e-4
    )
    assert model.visual.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert float(model.clamped_logit_scale()) == pytest.approx(100.0)
