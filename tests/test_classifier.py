"""Each way of building the zero-shot classifier, on a toy embedding space where the answer is known."""

from __future__ import annotations

import math

import pytest
import torch

from fungalzsl.errors import FungalError
from fungalzsl.eval.classifier import build_classifier, load_hierarchy, waffle_descriptors
from keyword_model import KeywordModel

# Keyword directions in 3-D: "east" = x, "north" = y, "up" = z.
SPACE = {"east": (1, 0, 0), "north": (0, 1, 0), "up": (0, 0, 1), "northeast": (0.8, 0.6, 0)}


def _img(*v: float) -> torch.Tensor:
    return torch.tensor([v], dtype=torch.float32)


def test_mean_sim_mean_and_max_disagree_where_theory_says():
    model = KeywordModel(SPACE)
    # class A: two "east" descriptions and one "north"; class B: one "northeast" description.
    texts = {"A": ["east", "east", "north"], "B": ["northeast"]}
    x = _img(1, 0, 0)
    # mean of embeddings: A = normalise(2, 1) → cos 0.894 > B 0.8       → A
    # mean of similarities: A = (1 + 1 + 0) / 3 = 0.667 < B 0.8         → B
    # max similarity: A = 1.0 > B 0.8                                      → A
    expect = {"mean": (0, 2 / math.sqrt(5)), "sim-mean": (1, 0.8), "max": (0, 1.0)}
    for method, (winner, score) in expect.items():
        clf = build_classifier(model, ["A", "B"], method, texts, logit_scale=10.0)
        logits = clf.logits(x)
        assert int(logits.argmax()) == winner, method
        assert float(logits[0, winner]) == pytest.approx(10.0 * score, abs=1e-3), method
    # one "east" and one "north": max still says A (1.0), the mean embedding says B (0.707 < 0.8)
    texts2 = {"A": ["east", "north"], "B": ["northeast"]}
    assert int(build_classifier(model, ["A", "B"], "max", texts2, logit_scale=10.0).logits(x).argmax()) == 0
    assert int(build_classifier(model, ["A", "B"], "mean", texts2, logit_scale=10.0).logits(x).argmax()) == 1


def test_probabilities_are_temperature_scaled_softmax():
    model = KeywordModel(SPACE, logit_scale=math.log(30.0))
    clf = build_classifier(model, ["A", "B"], "mean", {"A": ["east"], "B": ["north"]})
    assert clf.logit_scale == pytest.approx(30.0)
    p = clf.probabilities(_img(1, 0, 0))
    # cos 1 vs 0 at scale 30: p(A) = 1 / (1 + e^-30)
    assert float(p[0, 0]) == pytest.approx(1 / (1 + math.exp(-30)))
    assert torch.allclose(p.sum(-1), torch.ones(1))


def test_template_uses_only_the_class_name():
    model = KeywordModel(SPACE)
    clf = build_classifier(model, ["east", "north"], "template", None, template="an image of {class} cells")
    assert model.texts_seen == ["an image of east cells", "an image of north cells"]
    assert int(clf.logits(_img(0.1, 1, 0)).argmax()) == 1


def test_waffle_is_random_but_seeded_and_shared_across_classes():
    a, b = waffle_descriptors(8, seed=1), waffle_descriptors(8, seed=1)
    assert a == b and a != waffle_descriptors(8, seed=2) and len(set(a)) == 8
    model = KeywordModel(SPACE)
    clf = build_classifier(model, ["east", "north"], "waffle", None, waffle_count=4, seed=3)
    east = [t for t in model.texts_seen if "east" in t]
    north = [t for t in model.texts_seen if "north" in t]
    assert len(east) == len(north) == 4
    # the same random tail follows each class name: the only difference is the name itself
    assert [t.split(", which has ")[1] for t in east] == [t.split(", which has ")[1] for t in north]
    assert int(clf.logits(_img(1, 0.2, 0)).argmax()) == 0


def test_chils_recovers_parent_through_sub_classes(tmp_path):
    # Parent names are uninformative (both point "up"); only the sub-class names separate the images.
    space = {"alpha": (0, 0, 1), "beta": (0, 0, 1), "gamma": (1, 0, 0), "delta": (0, 1, 0)}
    model = KeywordModel(space)
    hfile = tmp_path / "h.yaml"
    hfile.write_text("alpha: [gamma]\nbeta: [delta]\n")
    hier = load_hierarchy(hfile)
    x = _img(0, 1, 0)
    template = build_classifier(model, ["alpha", "beta"], "template", None, logit_scale=20.0)
    assert float(template.probabilities(x)[0, 1]) == pytest.approx(0.5, abs=1e-4)  # a coin flip
    chils = build_classifier(model, ["alpha", "beta"], "chils", None, hierarchy=hier, logit_scale=20.0)
    assert chils.prototype_names == ["gamma", "delta"]
    p = chils.probabilities(x)
    # p(sub|x): "delta, a type of beta" = normalise(0,1,1) → cos .707 vs 0 → softmax(20·[0, .707]);
    # p(parent|x) = 0.5 each; reweighted, normalised per parent: the same ratio.
    e = math.exp(20 * (1 / math.sqrt(2)))
    assert float(p[0, 1]) == pytest.approx(e / (1 + e), rel=1e-4)


def test_chils_parent_without_sub_classes_stands_for_itself(tmp_path):
    model = KeywordModel(SPACE)
    clf = build_classifier(model, ["east", "north"], "chils", None, hierarchy={"east": ["up"]})
    assert clf.prototype_names == ["up", "north"]
    assert clf.owner.tolist() == [0, 1]


def test_stored_class_embeddings_are_used_as_is():
    model = KeywordModel(SPACE)
    emb = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    clf = build_classifier(model, ["A", "B"], "mean", None, class_emb=emb, logit_scale=5.0)
    assert model.texts_seen == []
    assert int(clf.logits(_img(1, 0, 0)).argmax()) == 1


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"method": "bogus"}, "unknown classifier"),
        ({"method": "mean"}, "needs a description set"),
        ({"method": "chils"}, "needs a hierarchy"),
        ({"method": "mean", "by_class": {"A": ["east"]}}, "no descriptions for class(es): B"),
        ({"method": "template", "template": "no placeholder"}, "lacks '{class}'"),
        ({"method": "chils", "hierarchy": {"Z": ["x"]}}, "not among the classes"),
    ],
)
def test_user_errors_are_one_line(kwargs, needle):
    kwargs.setdefault("by_class", None)
    with pytest.raises(FungalError) as e:
        build_classifier(KeywordModel(SPACE), ["A", "B"], **kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_hierarchy_file(tmp_path):
    f = tmp_path / "h.yaml"
    f.write_text("- just a list\n")
    with pytest.raises(FungalError, match="must map each parent"):
        load_hierarchy(f)
    with pytest.raises(FungalError, match="does not exist"):
        load_hierarchy(tmp_path / "missing.yaml")


def test_fit_logit_scale_minimises_nll_and_keeps_predictions():
    from fungalzsl.eval.classifier import fit_logit_scale

    torch.manual_seed(0)
    model = KeywordModel(SPACE)
    clf = build_classifier(model, ["east", "north"], "template", None, logit_scale=100.0)
    # 40 images near the two axes, 8 of them labelled against their look: an overconfident classifier
    x = torch.cat([torch.tensor([[1.0, 0.3, 0]]).repeat(20, 1), torch.tensor([[0.3, 1.0, 0]]).repeat(20, 1)])
    x = x + 0.05 * torch.randn_like(x)
    y = [0] * 16 + [1] * 4 + [1] * 16 + [0] * 4
    s = fit_logit_scale(clf, x, y)
    assert clf.logit_scale == 100.0  # the classifier itself is left as it was

    def nll(v: float) -> float:
        logits = torch.log_softmax(v / 100.0 * clf.logits(x), -1)
        return float(torch.nn.functional.cross_entropy(logits, torch.tensor(y)))

    grid = torch.logspace(-0.3, 3, 400).tolist()
    assert nll(s) <= min(nll(v) for v in grid) + 1e-4
    assert s < 100.0
    clf2 = build_classifier(model, ["east", "north"], "template", None, logit_scale=s)
    assert torch.equal(clf2.logits(x).argmax(1), clf.logits(x).argmax(1))


def test_the_shipped_fungi_hierarchy_covers_the_paper_classes():
    hier = load_hierarchy("fungi")
    assert set(hier) == {"spore", "hyphae", "mycelium"}
    assert all(len(subs) >= 2 for subs in hier.values())
