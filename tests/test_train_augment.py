"""Training augmentation: views are a pure function of (seed, image, view), the crop stays inside the
image, the settings are checked, and the cached views train exactly like augmenting from pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fungalzsl.errors import FungalError
from fungalzsl.train.augment import augment_image, crop_box, epoch_views
from fungalzsl.train.loop import train_run
from fungalzsl.train.settings import AugmentConfig, resolve_config
from tiny_data import make_dataset, make_descriptions


def _image(size: int = 48) -> Image.Image:
    a = np.random.default_rng(0).integers(0, 255, (size, size + 8, 3), dtype=np.uint8)
    return Image.fromarray(a, "RGB")


def test_a_view_is_a_function_of_its_seed_and_views_differ() -> None:
    cfg = AugmentConfig(blur=1.0, noise=1.0, greyscale=0.0)
    a = augment_image(_image(), cfg, 32, np.random.default_rng([0, 3, 1]))
    b = augment_image(_image(), cfg, 32, np.random.default_rng([0, 3, 1]))
    c = augment_image(_image(), cfg, 32, np.random.default_rng([0, 3, 2]))
    assert a.size == (32, 32) and a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_every_augmentation_off_leaves_the_image_unchanged() -> None:
    cfg = AugmentConfig(crop_scale=None, flip=False, jitter=0, hue=0, greyscale=0, blur=0, noise=0)
    im = _image()
    assert np.array_equal(np.asarray(augment_image(im, cfg, 32, np.random.default_rng(0))), np.asarray(im))


def test_greyscale_view_has_equal_channels() -> None:
    cfg = AugmentConfig(crop_scale=None, flip=False, jitter=0, hue=0, greyscale=1.0, blur=0, noise=0)
    a = np.asarray(augment_image(_image(), cfg, 32, np.random.default_rng(0))).astype(int)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()


@settings(max_examples=200, deadline=None)
@given(
    w=st.integers(1, 600),
    h=st.integers(1, 600),
    lo=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**31),
)
def test_crop_box_stays_inside_the_image(w: int, h: int, lo: float, seed: int) -> None:
    top, left, ch, cw = crop_box(w, h, (lo, 1.0), (0.75, 4 / 3), np.random.default_rng(seed))
    assert min(top, left) >= 0 and min(ch, cw) >= 1
    assert top + ch <= h and left + cw <= w


def test_epoch_views_are_seeded_by_epoch_and_in_range() -> None:
    a, b = epoch_views(0, 3, 100, 4), epoch_views(0, 3, 100, 4)
    assert a.tolist() == b.tolist() and set(a.tolist()) <= {0, 1, 2, 3}
    assert a.tolist() != epoch_views(0, 4, 100, 4).tolist()


@pytest.mark.parametrize(
    "augment, field",
    [
        ({"crop_scale": [0.8, 0.2]}, "crop_scale"),
        ({"crop_scale": [0.0, 1.0]}, "crop_scale"),
        ({"views": 0}, "views"),
        ({"blur": 1.5}, "blur"),
        ({"rotate": True}, "rotate"),
    ],
)
def test_bad_augment_settings_are_one_line_errors(augment: dict, field: str) -> None:
    with pytest.raises(FungalError, match=field) as e:
        resolve_config({"augment": augment}, None)
    assert "\n" not in str(e.value)


def test_paper_preset_trains_without_augmentation_and_cpu_default_with_it() -> None:
    assert resolve_config("paper", None).augment is None
    assert resolve_config({"augment": {}}, None).augment == AugmentConfig()
    default = resolve_config("cpu-default", None)  # the recipe chosen on data/real-dev
    assert default.augment == AugmentConfig(views=2) and default.unfreeze_max == {"image": 0, "text": 0}


def _losses(run: Path) -> list[float]:
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in recs if r["type"] == "epoch"]


@pytest.mark.slow
def test_cached_views_train_like_augmenting_from_pixels(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 4, "val": 2})
    desc = make_descriptions(tmp_path / "d.jsonl")
    cfg = {"epochs": 2, "batch_size": 6, "unfreeze_every": 0, "image_size": 32, "progress": False,
           "augment": {"views": 2}}  # fmt: skip
    cached = train_run(data, desc, tmp_path / "a", "lite", {**cfg, "cache": True})
    pixels = train_run(data, desc, tmp_path / "b", "lite", {**cfg, "cache": False})
    plain = train_run(data, desc, tmp_path / "c", "lite", {**cfg, "augment": None})
    assert _losses(tmp_path / "a") == pytest.approx(_losses(tmp_path / "b"), rel=1e-4)
    assert _losses(tmp_path / "a") != pytest.approx(_losses(tmp_path / "c"), rel=1e-4)
    assert cached["train"]["augment"]["views"] == 2 and plain["train"]["augment"] is None
    assert pixels["val_recall@1"] is not None
