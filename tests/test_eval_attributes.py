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


# --- blend: mean + attribute scores (eval.attributes.BlendClassifier) ---


def test_blend_logits_are_exact_on_a_small_row():
    from fungalzsl.eval.attributes import blend_logits

    m, a = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[30.0, 20.0, 10.0]])
    # a standardised over the classes, put on m's mean 2 and spread: [3, 2, 1]
    assert torch.allclose(blend_logits(m, a, 1.0), torch.tensor([[3.0, 2.0, 1.0]]))
    assert torch.allclose(blend_logits(m, a, 0.5), torch.tensor([[2.0, 2.0, 2.0]]))
    assert torch.equal(blend_logits(m, a, 0.0), m)
    # a row of equal attribute scores adds nothing but the row mean: the ranking stays mean's
    assert blend_logits(m, torch.ones(1, 3), 0.5).argmax().item() == 2


def _blend_and_parts(weight: float):
    model = KeywordModel(SPACE)
    kw = dict(logit_scale=10.0, prompts=PROMPTS)
    blend = build_classifier(model, list(TEXTS), "blend", TEXTS, blend_weight=weight, **kw)
    mean = build_classifier(model, list(TEXTS), "mean", TEXTS, **kw)
    attrs = build_classifier(model, list(TEXTS), "attributes", TEXTS, **kw)
    return blend, mean, attrs


IMAGES = torch.tensor(
    [[1.0, 0.0, 0.0, 0.0], [1.0, 0.8, 0.0, 0.0], [0.0, 0.5, 1.0, 0.0], [1.0, 0.0, 0.1, 0.8]]
)


def test_blend_weight_zero_is_mean_and_one_ranks_as_attributes():
    blend0, mean, attrs = _blend_and_parts(0.0)
    assert blend0.method == "blend" and blend0.classes == list(TEXTS)
    assert torch.equal(blend0.logits(IMAGES), mean.logits(IMAGES))
    blend1, _, _ = _blend_and_parts(1.0)
    assert torch.equal(blend1.logits(IMAGES).argmax(1), attrs.logits(IMAGES).argmax(1))
    # the blend stays in the mean classifier's units: doubling the temperature doubles the logits
    half, _, _ = _blend_and_parts(0.5)
    before = half.logits(IMAGES)
    half.logit_scale = 20.0
    assert half.attributes.logit_scale == 20.0 and torch.allclose(half.logits(IMAGES), 2 * before, atol=1e-5)


def test_stacked_blend_with_weight_zero_is_stacked_mean():
    from fungalzsl.eval.gzsl import stack

    blend0, mean, _ = _blend_and_parts(0.0)
    mask = torch.tensor([True, False, True, False])  # spore, hyphae trained; germinating, yeast new
    val, labels = IMAGES[[0, 2]], [0, 2]
    a, info_a = stack(blend0, val, labels, mask, 0.5)
    b, info_b = stack(mean, val, labels, mask, 0.5)
    assert info_a["gamma"] == info_b["gamma"] and torch.equal(a.logits(IMAGES), b.logits(IMAGES))


@pytest.mark.parametrize("weight", [1.5, -0.1, float("nan")])
def test_bad_blend_weight_is_a_one_line_error(weight):
    from fungalzsl.errors import FungalError

    with pytest.raises(FungalError, match=r"--blend-weight .*: must be in \[0, 1\]"):
        _blend_and_parts(weight)


def test_bad_blend_weight_on_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from fungalzsl.cli import app

    r = CliRunner().invoke(app, ["evaluate", "lite", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                                 "--classifier", "blend", "--blend-weight", "2"])  # fmt: skip
    assert r.exit_code != 0 and "--blend-weight 2.0: must be in [0, 1]" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "o").exists()
