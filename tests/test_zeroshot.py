"""The zero-shot rule (fungalzsl.predict.zeroshot): the logit-scale clamp and the stored class embeddings."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from fungalzsl.predict.zeroshot import (
    CLASS_EMBEDDINGS_FILE,
    MAX_LOGIT_SCALE,
    clamp_logit_scale,
    load_class_embeddings,
    model_logit_scale,
    save_class_embeddings,
)
from test_eval_toy import KeywordModel

SPACE = {"east": (1.0, 0.0, 0.0), "north": (0.0, 1.0, 0.0), "up": (0.0, 0.0, 1.0)}


def test_model_logit_scale_is_exp_and_clamped():
    assert model_logit_scale(KeywordModel(SPACE, logit_scale=math.log(7.0))) == pytest.approx(7.0)
    assert model_logit_scale(KeywordModel(SPACE, logit_scale=10.0)) == pytest.approx(100.0)


@pytest.mark.parametrize("log_scale", [math.log(7.0), 4.0, math.log(100.0), 10.0])
def test_one_clamp_for_training_and_scoring(log_scale):
    from fungalzsl.models.base import TwoTowerModel

    model = TwoTowerModel()  # the base class: only the temperature, no towers
    with torch.no_grad():
        model.logit_scale.fill_(log_scale)
    trained = model.clamped_logit_scale()
    # the scale training multiplies by is exactly the one evaluation and prediction use
    assert (
        float(trained.detach())
        == model_logit_scale(model)
        == float(clamp_logit_scale(torch.tensor(log_scale)))
    )
    assert float(trained.detach()) <= MAX_LOGIT_SCALE
    trained.backward()
    capped = math.exp(log_scale) > MAX_LOGIT_SCALE
    # below the cap the temperature still learns (d exp(x)/dx = exp(x)); at the cap it stops
    assert float(model.logit_scale.grad) == (0.0 if capped else pytest.approx(math.exp(log_scale), rel=1e-6))


def test_a_saturated_scale_is_exactly_the_cap():
    # float32(log 100) exponentiates to 100.0000076; the cap, not that, is what every path uses
    assert model_logit_scale(KeywordModel(SPACE, logit_scale=math.log(100.0))) == 100.0


def test_class_embeddings_round_trip_through_the_one_writer_and_reader(tmp_path):
    from safetensors import safe_open

    emb = F.normalize(torch.randn(5, 3, generator=torch.Generator().manual_seed(0)), dim=-1).T  # strided
    f = tmp_path / CLASS_EMBEDDINGS_FILE
    written = save_class_embeddings(f, emb, ["spore", "hyphae", "mycelium"])
    assert written.is_contiguous() and torch.equal(written, emb)
    names, back = load_class_embeddings(f, ["spore", "hyphae", "mycelium"])
    assert names == ["spore", "hyphae", "mycelium"] and torch.equal(back, emb)
    with safe_open(str(f), "pt") as h:  # the documented format (docs/training.md)
        assert list(h.keys()) == ["embeddings"]
        assert h.metadata() == {"classes": json.dumps(["spore", "hyphae", "mycelium"])}
    save_class_embeddings(f, emb, ["a", "b", "c"], objective="catlip")
    with safe_open(str(f), "pt") as h:
        assert h.metadata() == {"classes": json.dumps(["a", "b", "c"]), "objective": "catlip"}


def test_the_reader_takes_names_from_the_config_and_says_none_when_it_cannot(tmp_path):
    from safetensors.torch import save_file

    f = tmp_path / CLASS_EMBEDDINGS_FILE
    assert load_class_embeddings(f, ["a"]) is None  # no file
    save_file({"other": torch.eye(2)}, str(f))
    names, emb = load_class_embeddings(f, [{"name": "a"}, "b"])  # one tensor, any key; records or names
    assert names == ["a", "b"] and torch.equal(emb, torch.eye(2))
    assert load_class_embeddings(f, None) is None  # no class list in the config
    save_file({"x": torch.eye(2), "y": torch.eye(2)}, str(f))
    assert load_class_embeddings(f, ["a", "b"]) is None  # which tensor? none


def test_training_writes_what_evaluation_and_prediction_read(tmp_path):
    from fungalzsl.eval.data import ModelSource, stored_class_embeddings
    from fungalzsl.predict.zeroshot import class_embeddings
    from fungalzsl.train.evaluate import write_class_embeddings

    model = KeywordModel(SPACE)
    by_class = {"A": ["east", "east up"], "B": ["north"]}
    written = write_class_embeddings(model, by_class, ["A", "B"], tmp_path / CLASS_EMBEDDINGS_FILE)
    assert torch.equal(written, class_embeddings(model, by_class, ["A", "B"]))
    names, for_eval = stored_class_embeddings(ModelSource(model, "toy", tmp_path, {"classes": ["A", "B"]}))
    assert names == ["A", "B"] and torch.equal(for_eval, written)
    # a count mismatch: evaluation falls back to descriptions, prediction refuses
    assert stored_class_embeddings(ModelSource(model, "toy", tmp_path, {"classes": ["A"]})) is None
