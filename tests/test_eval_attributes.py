"""Attribute-wise scoring (eval.attributes): a class is scored through the attributes its text names."""

from __future__ import annotations

import pytest
import torch

from fungalzsl.eval.attributes import ATTRIBUTE_PROMPTS, attribute_weights
from fungalzsl.eval.classifier import build_classifier
from keyword_model import KeywordModel

SPACE = {"round": (1, 0, 0, 0), "tube": (0, 1, 0, 0), "branch": (0, 0, 1, 0), "bud": (0, 0, 0, 1)}
PROMPTS = ("round", "tube", "branch", "bud")
TEXTS = {
    "spore": ["round", "round cells"],
    "germinating": ["round cells with a tube"],
    "hyphae": ["branch and tube", "branch"],
    "yeast": ["round with a bud"],
}


def test_weights_are_centred_over_classes_and_unit_per_class():
    cls = torch.randn(5, 8)
    att = torch.randn(7, 8)
    w = attribute_weights(cls, att)
    assert w.shape == (5, 7)
    assert torch.allclose(w.norm(dim=1), torch.ones(5), atol=1e-5)
    # what every class shares carries no weight: the columns of the centred map sum to ~0 before scaling
    raw = torch.nn.functional.normalize(cls, dim=-1) @ torch.nn.functional.normalize(att, dim=-1).T
    assert torch.allclose((raw - raw.mean(0)).sum(0), torch.zeros(7), atol=1e-5)


def test_images_go_to_the_class_whose_text_names_their_attributes():
    model = KeywordModel(SPACE)
    classes = list(TEXTS)
    clf = build_classifier(model, classes, "attributes", TEXTS, logit_scale=10.0, prompts=PROMPTS)
    images = torch.tensor(
        [[1.0, 0.0, 0.0, 0.0], [1.0, 0.8, 0.0, 0.0], [0.0, 0.5, 1.0, 0.0], [1.0, 0.0, 0.0, 0.8]]
    )
    assert clf.logits(images).argmax(dim=1).tolist() == [0, 1, 2, 3]
    # the profile is standardised: the scale of an image embedding does not change its scores
    assert torch.allclose(clf.logits(3 * images), clf.logits(images), atol=1e-5)
    assert clf.prototype_names == list(PROMPTS)


def test_attributes_is_an_evaluate_classifier_with_the_shipped_prompts():
    model = KeywordModel(SPACE)
    clf = build_classifier(model, list(TEXTS), "attributes", TEXTS, logit_scale=5.0)
    assert clf.method == "attributes" and clf.prototype_names == list(ATTRIBUTE_PROMPTS)
    probs = clf.probabilities(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    assert probs.shape == (1, 4) and float(probs.sum()) == pytest.approx(1.0)
    # no class name appears in any shipped prompt
    assert not any(c in p for p in ATTRIBUTE_PROMPTS for c in ("spore", "hyph", "mycel", "yeast"))
