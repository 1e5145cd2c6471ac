"""open_clip ``backbone`` features are the image tower's pooled features before its projection
(:func:`fungalzsl.models.openclip.tower_with_pre_projection`), for the three tower types open_clip builds:
VisionTransformer, ModifiedResNet and a timm trunk; exact maths against the model's own weights, one
pass, and the model left as it was."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fungalzsl.models.openclip import OpenClipModel, tower_with_pre_projection
from test_models_backends import TINY_OPENCLIP

TEXT = TINY_OPENCLIP["text_cfg"]
VIT = TINY_OPENCLIP
RESNET = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8},
    "text_cfg": TEXT,
}
TIMM = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "timm_model_name": "test_resnet", "timm_model_pretrained": False,
                   "timm_pool": "avg", "timm_proj": "linear"},
    "text_cfg": TEXT,
}  # fmt: skip


def _model(cfg: dict) -> OpenClipModel:
    torch.manual_seed(0)
    return OpenClipModel("tiny", pretrained=False, model_cfg=cfg).eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _check_common(model: OpenClipModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        emb, pre = model.encode_image_with_backbone(x)
        assert torch.allclose(emb, model.encode_image(x), atol=1e-6)  # the same embedding as predict's
        assert torch.allclose(model.backbone_features(x), pre)
    after = model.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], v) for k, v in state.items())
    return emb, pre


def test_vit_backbone_is_the_pooled_token_before_proj(x) -> None:
    model = _model(VIT)
    v = model.model.visual
    emb, pre = _check_common(model, x)
    assert pre.shape == (3, 32) and emb.shape == (3, 16)  # width 32, projected to 16
    with torch.no_grad():  # the class token after ln_post, written out from the tower's own layers
        h = v.ln_pre(torch.cat([v.class_embedding.expand(3, 1, -1), v.conv1(x).flatten(2).transpose(1, 2)], 1)
                     + v.positional_embedding)  # fmt: skip
        token = v.ln_post(v.transformer(h))[:, 0]
    assert torch.allclose(pre, token, atol=1e-5)
    assert torch.allclose(emb, F.normalize(pre @ v.proj, dim=-1), atol=1e-6)
    assert isinstance(v.proj, torch.nn.Parameter)  # untouched


def test_modified_resnet_backbone_is_attnpool_before_c_proj(x) -> None:
    model = _model(RESNET)
    pool = model.model.visual.attnpool
    emb, pre = _check_common(model, x)
    assert pre.shape == (3, 8 * 32)  # the layer4 width (width · 32), not the 16-d embedding
    with torch.no_grad():
        assert torch.allclose(emb, F.normalize(pool.c_proj(pre), dim=-1), atol=1e-6)
        # and pre is the attention output: c_proj is affine, so pool(h) = W pre + b for every image
        h = model.model.visual.layer4(model.model.visual.layer3(model.model.visual.layer2(
            model.model.visual.layer1(model.model.visual.stem(x)))))  # fmt: skip
        assert torch.allclose(pool(h), pre @ pool.c_proj.weight.T + pool.c_proj.bias, atol=1e-5)


def test_timm_backbone_is_the_head_before_proj(x) -> None:
    pytest.importorskip("timm")
    model = _model(TIMM)
    v = model.model.visual
    emb, pre = _check_common(model, x)
    with torch.no_grad():
        assert torch.allclose(pre, v.trunk(x), atol=1e-6)  # the trunk's average-pooled features
        assert torch.allclose(emb, F.normalize(v.head.proj(pre), dim=-1), atol=1e-6)
    assert pre.shape == (3, v.trunk.num_features) and pre.shape[1] != 16


def test_a_tower_of_unknown_type_gives_its_output_twice() -> None:
    tower = torch.nn.Linear(4, 2)
    out, pre = tower_with_pre_projection(tower, torch.ones(1, 4))
    assert torch.equal(out, pre) and torch.equal(out, tower(torch.ones(1, 4)))


@pytest.mark.slow
def test_open_clip_adapter_on_backbone_features_round_trips(tmp_path) -> None:
    """baseline (a tiny open_clip, zero-shot run dir) → adapt --features backbone → Classifier.load:
    its probabilities are the probe on the normalised pre-projection tokens, written out here."""
    from PIL import Image

    from fungalzsl import Classifier
    from fungalzsl.fewshot.baseline import build_baseline
    from test_fewshot_cli import _ok, make_shots
    from test_models_backends import tiny_openclip_dir
    from tiny_data import make_dataset

    spec = f"openclip:local-dir:{tiny_openclip_dir(tmp_path)}"
    build_baseline(spec, make_dataset(tmp_path / "data", {"train": 2}), tmp_path / "base", method="zeroshot")
    shots, out = make_shots(tmp_path / "shots", 3), tmp_path / "adapted"
    _ok(
        [
            "adapt",
            tmp_path / "base",
            "--shots",
            shots,
            "--out",
            out,
            "--method",
            "probe",
            "--features",
            "backbone",
        ]
    )
    clf = Classifier.load(out)
    assert (clf.adapter.features, clf.adapter.views) == ("backbone", 1)
    assert clf.adapter.tensors["weight"].shape == (3, 32)  # fitted on the 32-d tokens, not the 16-d embedding
    images = sorted(shots.rglob("*.png"))
    v = clf.model.model.visual
    x = torch.stack([clf.model.preprocess(Image.open(p).convert("RGB")) for p in images])
    with torch.no_grad():
        token = v.ln_post(v.transformer(v._embeds(x)))[:, 0]
        w, b = clf.adapter.tensors["weight"], clf.adapter.tensors["bias"]
        expect = (F.normalize(token, dim=-1) @ w.T + b).softmax(-1)
    got = torch.tensor([[r.probabilities[c] for c in clf.classes] for r in clf.predict(images)])
    assert torch.allclose(got, expect, atol=1e-5)
