"""The start model shares the run's image backbone when it stayed frozen (fungalzsl.eval.imagecache),
with the numbers each model gives on its own; a backbone that trained is never shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fungalzsl.eval import evaluate_run
from fungalzsl.eval.imagecache import ImageStore, backbone_key, cached_image
from fungalzsl.eval.textcache import TextStore
from keyword_model import GOOD, KeywordModel, make_colour_dataset, write_descriptions


def _lite(seed: int):
    from fungalzsl.models import build_model

    torch.manual_seed(seed)
    return build_model("lite", embed_dim=8, image_size=32).eval()


def test_cached_embeddings_equal_the_models_own_and_the_backbone_runs_once() -> None:
    a, b = _lite(0), _lite(1)  # the same pretrained EfficientNet, other random projection heads
    x = torch.randn(3, 3, 32, 32)
    store = ImageStore()
    with torch.no_grad():
        ea, eb = cached_image(a, store).encode_image(x), cached_image(b, store).encode_image(x)
        assert torch.equal(ea, a.encode_image(x)) and torch.equal(eb, b.encode_image(x))
        assert store.encoded == 3 and not torch.allclose(ea, eb)  # one backbone pass, two heads
        cached_image(a, store).encode_image(x[:2])  # other pixels: a new pass
        assert store.encoded == 5
        b.visual.conv_stem.weight[0, 0, 0, 0] += 1e-3  # a backbone that trained: its own key
        assert backbone_key(b)[0] != backbone_key(a)[0]
        assert torch.equal(cached_image(b, store).encode_image(x), b.encode_image(x))
    assert store.encoded == 8


def test_a_model_without_a_separate_backbone_is_used_as_it_is() -> None:
    m = KeywordModel()
    assert backbone_key(m) is None and cached_image(m, ImageStore()) is m
    assert cached_image(m, None) is m


def test_a_shared_text_store_embeds_the_second_evaluations_texts_no_more(tmp_path: Path) -> None:
    data = make_colour_dataset(tmp_path / "data")
    good = write_descriptions(tmp_path / "good.jsonl", GOOD, "good")
    model, store = KeywordModel(), TextStore()
    first = evaluate_run(model, data, tmp_path / "a", descriptions=[good], n_boot=10, text_store=store)
    seen = len(model.texts_seen)
    second = evaluate_run(model, data, tmp_path / "b", descriptions=[good], n_boot=10, text_store=store)
    assert seen > 0 and len(model.texts_seen) == seen  # every text came from the store
    assert first["recall@1"] == second["recall@1"] and first["nll"] == second["nll"]


@pytest.mark.slow
@pytest.mark.parametrize("image_groups", [0, 1])
def test_lite_run_baseline_shares_the_frozen_backbone_only(tmp_path: Path, monkeypatch, image_groups) -> None:
    from fungalzsl.models.lite import LiteModel
    from fungalzsl.train.loop import train_run
    from tiny_data import make_dataset, make_descriptions

    data = make_dataset(tmp_path / "data", {"train": 4, "val": 2, "test": 3})
    desc = make_descriptions(tmp_path / "d.jsonl", per_class=6)
    cfg = {"epochs": 2, "unfreeze_every": 1, "batch_size": 6, "unfreeze_max": {"image": image_groups, "text": 0},
           "image_size": 32,
           "embed_dim": 16, "progress": False, "device": "cpu"}  # fmt: skip
    train_run(data, desc, tmp_path / "run", "lite", cfg)
    runs: list[int] = []
    trunk, head = LiteModel.image_trunk, LiteModel.image_head

    def counting_trunk(self, x, n, start=0):
        if n > start:
            runs.append(len(x))
        return trunk(self, x, n, start)

    def counting_head(self, h, n):
        if n == 0:
            runs.append(len(h))  # the uncached path runs every block in image_head
        return head(self, h, n)

    monkeypatch.setattr(LiteModel, "image_trunk", counting_trunk)
    monkeypatch.setattr(LiteModel, "image_head", counting_head)
    got = {}
    for cache in (False, True):
        runs.clear()
        out = tmp_path / f"eval-{cache}"
        evaluate_run(tmp_path / "run", data, out, n_boot=20, cache_texts=cache, figures=False)
        m = json.loads((out / "metrics.json").read_text())
        got[cache] = (sum(runs), {k: m[k] for k in ("recall@1", "nll", "confusion_matrix", "baseline")})
    (passes_off, m_off), (passes_on, m_on) = got[False], got[True]
    n_test = 9  # 3 classes x 3 test images
    assert passes_off == 2 * n_test  # the run, then its start model
    assert passes_on == (n_test if image_groups == 0 else 2 * n_test)
    for key in ("recall@1", "confusion_matrix"):
        assert m_on[key] == m_off[key] and m_on["baseline"][key] == m_off["baseline"][key]
    # the text store's batches differ from re-embedding per classifier (docs: NLL within 1e-6)
    assert m_on["nll"] == pytest.approx(m_off["nll"], abs=1e-6)
    assert m_on["baseline"]["nll"] == pytest.approx(m_off["baseline"]["nll"], abs=1e-6)
