"""The zero-shot rule (fungalzsl.predict.zeroshot): the logit-scale clamp and the stored class embeddings."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from fungalzsl.predict.zeroshot import (
    MAX_LOGIT_SCALE,
    clamp_logit_scale,
    load_class_embeddings,
    model_logit_scale,
    save_class_embeddings,
)
from fungalzsl.rundir import CLASS_EMBEDDINGS_FILE
from keyword_model import KeywordModel, make_colour_dataset


class ProjectedModel(KeywordModel):
    """KeywordModel in 32 dimensions: random keyword vectors, images as a random projection of their
    pixels. Irregular numbers, so a path that normalised twice or multiplied in another order would
    differ in the last bits (the plain RGB space is too tidy to show it)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        super().__init__({w: torch.randn(32, generator=g).tolist() for w in ("red", "green", "blue")}, 3.6)
        self.proj = torch.randn(3 * 8 * 8, 32, generator=g)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.float().flatten(1) @ self.proj, dim=-1)


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
    from fungalzsl.eval.sources import ModelSource, stored_class_embeddings
    from fungalzsl.predict.classifier import Classifier
    from fungalzsl.predict.zeroshot import class_embeddings
    from fungalzsl.train.evaluate import write_class_embeddings

    model = KeywordModel(SPACE)
    by_class = {"A": ["east", "east up"], "B": ["north"]}
    written = write_class_embeddings(model, by_class, ["A", "B"], tmp_path / CLASS_EMBEDDINGS_FILE)
    assert torch.equal(written, class_embeddings(model, by_class, ["A", "B"]))
    names, for_eval = stored_class_embeddings(ModelSource(model, "toy", tmp_path, {"classes": ["A", "B"]}))
    stored = load_class_embeddings(tmp_path / CLASS_EMBEDDINGS_FILE, ["A", "B"])
    clf = Classifier(model, *stored, model_logit_scale(model))
    assert names == clf.classes == ["A", "B"]
    assert torch.equal(for_eval, written) and torch.equal(clf.class_embeddings, written)
    # a count mismatch: evaluation falls back to descriptions, prediction refuses
    assert stored_class_embeddings(ModelSource(model, "toy", tmp_path, {"classes": ["A"]})) is None


def test_evaluation_prediction_and_training_validation_give_identical_probabilities(tmp_path):
    """Same model, same descriptions: every path scores through the rule, so not one bit differs."""
    from fungalzsl.eval.classifier import build_classifier
    from fungalzsl.predict.classifier import Classifier
    from fungalzsl.predict.embed import embed_images
    from fungalzsl.train.evaluate import TextFeatures, recall_at_1, write_class_embeddings
    from fungalzsl.train.inputs import FeatureCache

    make_colour_dataset(tmp_path / "data")
    paths = sorted((tmp_path / "data" / "test").rglob("*.png"))
    classes = ["red", "green", "blue"]
    y = torch.tensor([classes.index(p.parent.name) for p in paths])
    model = ProjectedModel()
    by_class = {
        "red": ["red", "red blue"],
        "green": ["green", "green green red"],
        "blue": ["blue", "blue green"],
    }

    # evaluation (fungalzsl evaluate): from the descriptions, and from the run's stored embeddings
    img, _, _ = embed_images(model, paths)
    evaluated = build_classifier(model, classes, "mean", by_class).probabilities(img)
    f = tmp_path / CLASS_EMBEDDINGS_FILE
    write_class_embeddings(model, by_class, classes, f)
    names, stored = load_class_embeddings(f, classes)
    from_file = build_classifier(model, names, "mean", class_emb=stored).probabilities(img)
    # prediction (fungalzsl predict / serve): the run's embeddings, and the same descriptions via --classes
    clf = Classifier(model, names, stored, model_logit_scale(model))
    predicted = torch.tensor([[r.probabilities[c] for c in classes] for r in clf.predict(paths)])
    clf.set_classes(by_class)
    relabelled = torch.tensor([[r.probabilities[c] for c in classes] for r in clf.predict(paths)])
    assert torch.equal(from_file, evaluated) and torch.equal(predicted, evaluated)
    assert torch.equal(relabelled, evaluated)
    # training validation reports the accuracy and mean p(true class) of those same probabilities
    cache = FeatureCache(model, paths, 0, 64, 0, "cpu")
    texts = TextFeatures(model, [t for c in classes for t in by_class[c]], 64)
    cfg = SimpleNamespace(eval_batch_size=64)
    recall, p_true = recall_at_1(model, cache, 0, texts, 0, y.tolist(), by_class, classes, cfg)
    assert p_true == float(evaluated.gather(1, y[:, None]).mean())
    assert recall == float((evaluated.argmax(1) == y).float().mean())
