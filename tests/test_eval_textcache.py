"""Evaluate embeds each distinct text once per text tower (fungalzsl.eval.textcache), with the same
results as re-embedding them for every classifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fungalzsl.eval import evaluate_run
from fungalzsl.eval.textcache import TextStore, cached_text, tower_key
from keyword_model import GOOD, KeywordModel, make_colour_dataset, write_descriptions

VOLATILE = ("created_at", "image_seconds")


def _metrics(out: Path) -> dict:
    m = json.loads((out / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k not in VOLATILE}


def test_keyword_model_results_are_bit_equal_and_each_text_is_encoded_once(tmp_path: Path) -> None:
    data = make_colour_dataset(tmp_path / "data")
    good = write_descriptions(tmp_path / "good.jsonl", GOOD, "good")
    runs = {}
    for cache in (False, True):
        model, out = KeywordModel(), tmp_path / f"eval-{cache}"
        evaluate_run(model, data, out, descriptions=[good], n_boot=30, cache_texts=cache,
                     also_classifiers=("template", "waffle", "sim-mean", "max"))  # fmt: skip
        runs[cache] = (model.texts_seen, _metrics(out), (out / "predictions.csv").read_bytes())
    (seen_off, m_off, csv_off), (seen_on, m_on, csv_on) = runs[False], runs[True]
    assert m_on == m_off and csv_on == csv_off  # bit-equal: every float as written
    assert len(seen_on) == len(set(seen_on)) == len(set(seen_off))  # each distinct text once
    assert len(seen_on) < len(seen_off)


def test_the_key_follows_the_text_backbone_weights() -> None:
    from fungalzsl.models import build_model

    torch.manual_seed(0)
    a = build_model("lite", embed_dim=8, image_size=32)
    torch.manual_seed(1)
    b = build_model("lite", embed_dim=8, image_size=32)  # other random heads, same MiniLM
    (ka, sa), (kb, _) = tower_key(a), tower_key(b)
    assert sa == len(a.layer_groups()["text"]) and ka == kb
    with torch.no_grad():
        b.text.encoder.layer[-1].output.dense.weight[0, 0] += 1e-3  # a fine-tuned text tower
    assert tower_key(b)[0] != ka
    # the projection heads differ, so the shared backbone rows give each model its own embeddings
    store = TextStore()
    ea = cached_text(a, store).encode_text(["a spore", "long hyphae"])
    eb = cached_text(build_model_like(a, seed=1), store).encode_text(["a spore"])
    assert store.encoded == 2
    assert torch.equal(ea, a.encode_text(["a spore", "long hyphae"]))
    assert not torch.allclose(ea[:1], eb)
    assert tower_key(KeywordModel())[1] == 0  # no separate backbone: whole embeddings, per model object


def build_model_like(model, seed: int):
    from fungalzsl.models import build_model

    torch.manual_seed(seed)
    return build_model("lite", embed_dim=model.embed_dim, image_size=model.image_size)


@pytest.mark.slow
def test_lite_run_with_baseline_same_results_fewer_minilm_texts(tmp_path: Path, monkeypatch) -> None:
    from fungalzsl.models.lite import LiteModel
    from fungalzsl.train.loop import train_run
    from tiny_data import make_dataset, make_descriptions

    data = make_dataset(tmp_path / "data", {"train": 4, "val": 2, "test": 3})
    desc = make_descriptions(tmp_path / "d.jsonl", per_class=6)
    cfg = {"epochs": 1, "batch_size": 6, "unfreeze_max": {"image": 1, "text": 0}, "image_size": 32,
           "embed_dim": 16, "progress": False, "device": "cpu"}  # fmt: skip
    train_run(data, desc, tmp_path / "run", "lite", cfg)
    pooled = LiteModel._pooled
    counted: list[str] = []

    def counting(self, texts):
        counted.extend(texts)
        return pooled(self, texts)

    monkeypatch.setattr(LiteModel, "_pooled", counting)
    got = {}
    for cache in (False, True):
        counted.clear()
        out = tmp_path / f"eval-{cache}"
        evaluate_run(tmp_path / "run", data, out, n_boot=20, cache_texts=cache, figures=False,
                     also_classifiers=("template",))  # fmt: skip
        got[cache] = (len(counted), len(set(counted)), _metrics(out))
    (n_off, distinct, m_off), (n_on, distinct_on, m_on) = got[False], got[True]
    assert n_on == distinct_on == distinct < n_off  # MiniLM saw each distinct text once
    for m in (m_on, m_off):
        m.pop("by_classifier", None)
    for key in ("recall@1", "confusion_matrix", "per_class"):
        assert m_on[key] == m_off[key]
    assert m_on["baseline"]["recall@1"] == m_off["baseline"]["recall@1"]
    assert m_on["nll"] == pytest.approx(m_off["nll"], abs=1e-6)
    assert m_on["baseline"]["nll"] == pytest.approx(m_off["baseline"]["nll"], abs=1e-6)
