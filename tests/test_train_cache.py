"""Prefix caching must not change the maths: the loss (and its gradients) on cached frozen-prefix
features equal those of the full forward pass from pixels and strings."""

from __future__ import annotations

from pathlib import Path

import torch

from fungalzsl.images import list_split
from fungalzsl.models import build_model
from fungalzsl.train.evaluate import TextFeatures
from fungalzsl.train.inputs import FeatureCache
from fungalzsl.train.loss import MultiPositiveContrastiveLoss
from fungalzsl.train.unfreeze import apply_unfreeze
from tiny_data import make_dataset


def test_cached_loss_equals_uncached_loss(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 3})
    images = list_split(data, "train")
    texts = ["round yellow spores", "thin orange branching threads", "dense red mycelial network"]
    torch.manual_seed(0)
    model = build_model("lite", image_size=32)
    apply_unfreeze(model, {"image": 2, "text": 0})  # 16 of 18 image groups and the whole text tower frozen
    labels = torch.tensor(images.labels)
    loss_fn = MultiPositiveContrastiveLoss()

    # the trainer's path: base cache cut deeper (14) than this stage's split (16), then derived
    cache = FeatureCache(model, images.paths, base=14, batch_size=4, num_workers=0, device="cpu")
    feats = cache.at(16)
    assert cache.valid is not None and bool(cache.valid.all())
    assert feats.shape[1:] == (192, 1, 1)  # after block 14 (group 15); a 32-px input is 1x1 there
    tfeats = TextFeatures(model, texts, batch_size=2).at(7)
    cached = loss_fn(
        model.image_head(feats, 16), model.text_head(tfeats[labels], 7), labels, model.clamped_logit_scale()
    )
    cached["loss"].backward()
    grad_cached = model.image_proj.weight.grad.clone()
    model.zero_grad(set_to_none=True)

    pixels = torch.stack(
        [model.preprocess(__import__("PIL.Image").Image.open(p).convert("RGB")) for p in images.paths]
    )
    full = loss_fn(
        model.encode_image(pixels),
        model.encode_text([texts[i] for i in labels]),
        labels,
        model.clamped_logit_scale(),
    )
    full["loss"].backward()
    torch.testing.assert_close(cached["loss"], full["loss"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_cached, model.image_proj.weight.grad, rtol=1e-4, atol=1e-6)


def test_cache_skips_unreadable_images_and_lists_them(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 2})
    bad = data / "train" / "spore" / "broken.png"
    bad.write_bytes(b"not a png")
    images = list_split(data, "train")
    model = build_model("lite", image_size=32)
    apply_unfreeze(model, {"image": 0, "text": 0})
    cache = FeatureCache(model, images.paths, base=18, batch_size=4, num_workers=0, device="cpu")
    valid = cache.scan()
    assert int(valid.sum()) == len(images.paths) - 1
    assert not bool(valid[images.paths.index(bad)])
    assert len(cache.errors) == 1 and "broken.png" in cache.errors[0]


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    model = build_model("lite", image_size=32)
    apply_unfreeze(model, {"image": 3, "text": 0})
    x = torch.randn(4, 3, 32, 32)
    grads = []
    for enable in (False, True):
        assert model.set_grad_checkpointing(enable)
        model.zero_grad(set_to_none=True)
        model.encode_image(x).sum().backward()
        grads.append(model.visual.conv_head.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
