"""The few-shot classifiers on tiny hand-made embeddings, with values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fungalzsl.fewshot import methods as m

# Three classes on the axes of R^3; two shots each, tilted towards the next axis.
E = torch.eye(3)
X = torch.stack(
    [
        E[0],
        torch.tensor([0.8, 0.6, 0.0]),
        E[1],
        torch.tensor([0.0, 0.8, 0.6]),
        E[2],
        torch.tensor([0.6, 0.0, 0.8]),
    ]
)
Y = torch.tensor([0, 0, 1, 1, 2, 2])


def test_prototypes_are_normalised_centroids():
    p = m.prototypes(X, Y, 3)
    # class 0: mean of (1,0,0) and (.8,.6,0) = (.9,.3,0), normalised
    assert torch.allclose(p[0], torch.tensor([0.9, 0.3, 0.0]) / math.sqrt(0.9), atol=1e-6)
    logits = m.prototype_logits(E, p, scale=10.0)
    assert torch.allclose(logits[0], 10 * torch.tensor([0.9, 0.0, 0.3]) / math.sqrt(0.9), atol=1e-5)
    assert logits.argmax(-1).tolist() == [0, 1, 2]


def test_anchored_prototypes_add_the_moved_class_text_as_one_shot():
    text = E  # class k's text embedding is axis k
    p = m.anchored_prototypes(X, Y, 3, text)
    # class means (.9,.3,0), (0,.9,.3), (.3,0,.9): their mean is (.4,.4,.4); the texts' mean is (1/3,1/3,1/3)
    moved0 = torch.tensor([1 - 1 / 3 + 0.4, 0.4 - 1 / 3, 0.4 - 1 / 3])
    expect0 = torch.tensor([1.8, 0.6, 0.0]) + moved0 / moved0.norm()
    assert torch.allclose(p[0], expect0 / expect0.norm(), atol=1e-6)
    # by the 3-fold symmetry of X and E, the other classes are the same vector rotated
    assert torch.allclose(p[1], p[0][[2, 0, 1]], atol=1e-6) and torch.allclose(
        p[2], p[0][[1, 2, 0]], atol=1e-6
    )
    # no text weight: the plain prototypes
    assert torch.allclose(m.anchored_prototypes(X, Y, 3, text, weight=0.0), m.prototypes(X, Y, 3), atol=1e-6)
    with pytest.raises(ValueError, match=r"need \(3, 3\) class text embeddings"):
        m.anchored_prototypes(X, Y, 3, text[:2])


def test_the_text_anchor_outvotes_one_odd_shot():
    # class 0's only shot points away from its text (axis 0); class 1 has two typical shots
    x = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.8, 0.6]])
    y = torch.tensor([0, 1, 1])
    text = E[:2]
    query = torch.tensor(
        [[0.9, 0.3, 0.3]]
    )  # close to class 0's text, closer to class 1's shots than to the odd one
    assert m.prototype_logits(query, m.prototypes(x, y, 2), 1.0).argmax(-1).item() == 1
    assert m.prototype_logits(query, m.anchored_prototypes(x, y, 2, text), 1.0).argmax(-1).item() == 0


def test_missing_class_is_refused():
    with pytest.raises(ValueError, match=r"classes \[2\] have no shots"):
        m.prototypes(X[:4], Y[:4], 3)


def test_tip_logits_match_the_formula():
    zs = torch.tensor([[1.0, 2.0, 0.0]])
    x = E[:1]  # cos with the 6 keys: 1, .8, 0, 0, 0, .6
    out = m.tip_logits(x, zs, X, Y, 3, alpha=2.0, beta=5.0)
    a = [math.exp(-5 * (1 - c)) for c in (1, 0.8, 0, 0, 0, 0.6)]
    expect = [1 + 2 * (a[0] + a[1]), 2 + 2 * (a[2] + a[3]), 0 + 2 * (a[4] + a[5])]
    assert torch.allclose(out[0], torch.tensor(expect), atol=1e-5)
    assert torch.equal(m.tip_logits(x, zs, X, Y, 3, alpha=0.0, beta=5.0), zs)


def test_tip_leave_one_out_prefers_the_cache_when_the_text_is_wrong():
    zs = torch.tensor([[0.0, 5.0, 0.0]]).repeat(6, 1)  # the text classifier says "class 1" for everything
    alpha, beta = m.choose_tip(X, zs, Y, 3, alphas=(0.1, 100.0), betas=(5.5,))
    assert (alpha, beta) == (100.0, 5.5)
    # a right text classifier and a class-1 shot among the class-0 shots: a strong cache would get it wrong
    x = torch.stack(
        [E[0], torch.tensor([0.98, 0.199, 0.0]), E[1], torch.tensor([0.9, 0.436, 0.0]), E[2], E[2]]
    )
    right = 20 * torch.nn.functional.one_hot(Y, 3).float()
    assert m.choose_tip(x, right, Y, 3, alphas=(0.1, 100.0), betas=(5.5,)) == (0.1, 5.5)
    # one shot of a class: no leave-one-out, the documented default
    assert m.choose_tip(X[[0, 1, 2, 4]], zs[:4], Y[[0, 1, 2, 4]], 3) == m.TIP_DEFAULT


def test_probe_separates_and_is_deterministic():
    w, b = m.fit_probe(X, Y, 3, l2=1e-3)
    assert m.probe_logits(X, w, b).argmax(-1).tolist() == Y.tolist()
    w2, b2 = m.fit_probe(X, Y, 3, l2=1e-3)
    assert torch.equal(w, w2) and torch.equal(b, b2)
    # stronger L2, smaller weights
    w_big, _ = m.fit_probe(X, Y, 3, l2=1.0)
    assert w_big.norm() < w.norm()


def test_probe_optimum_satisfies_the_stationarity_condition():
    # at the optimum of mean CE + l2 |W|^2 the gradient is zero: X^T (P - Y)/N + 2 l2 W = 0, sum(P - Y) = 0
    l2 = 0.05
    w, b = m.fit_probe(X, Y, 3, l2=l2)
    p = m.probe_logits(X, w, b).double().softmax(-1)
    g = p - torch.nn.functional.one_hot(Y, 3).double()
    assert torch.allclose(
        g.T @ X.double() / 6 + 2 * l2 * w.double(), torch.zeros(3, 3, dtype=torch.float64), atol=1e-5
    )
    assert torch.allclose(g.sum(0), torch.zeros(3, dtype=torch.float64), atol=1e-5)


def test_probe_l2_choice():
    assert (
        m.choose_probe_l2(X[[0, 1, 2, 4]], Y[[0, 1, 2, 4]], 3) == m.PROBE_L2_DEFAULT
    )  # a class with one shot
    assert m.choose_probe_l2(X, Y, 3) in m.PROBE_L2_GRID
    assert m._folds(torch.tensor([0, 1, 0, 0, 1]), 2).tolist() == [0, 0, 1, 0, 1]


def test_balanced_accuracy():
    y = torch.tensor([0, 0, 0, 1])
    assert m.balanced_accuracy(y, torch.tensor([0, 0, 0, 0])) == 0.5
    assert m.balanced_accuracy(y, torch.tensor([0, 1, 1, 1])) == pytest.approx((1 / 3 + 1) / 2)


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4))
def test_every_method_classifies_its_own_well_separated_shots(seed, k):
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(3, 16, generator=g), dim=-1) * 4
    x = torch.nn.functional.normalize(
        centres.repeat_interleave(k, 0) + 0.1 * torch.randn(3 * k, 16, generator=g), dim=-1
    )
    y = torch.arange(3).repeat_interleave(k)
    assert m.prototype_logits(x, m.prototypes(x, y, 3), 50.0).argmax(-1).tolist() == y.tolist()
    w, b = m.fit_probe(x, y, 3, m.choose_probe_l2(x, y, 3))
    assert m.probe_logits(x, w, b).argmax(-1).tolist() == y.tolist()
    zs = torch.zeros(3 * k, 3)
    alpha, beta = m.choose_tip(x, zs, y, 3)
    assert m.tip_logits(x, zs, x, y, 3, alpha, beta).argmax(-1).tolist() == y.tolist()


def test_anchored_joint_prototypes_anchor_the_embedding_half_only():
    b = torch.tensor(
        [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]]
    )  # backbone half
    x = torch.cat([X, b], 1) / math.sqrt(2)  # both features: [e, b] / √2 with e and b unit vectors
    p = m.anchored_joint_prototypes(x, Y, 3, E)
    assert p.shape == (3, 5)
    assert torch.allclose(p[:, :3], m.anchored_prototypes(X, Y, 3, E) / math.sqrt(2), atol=1e-6)
    assert torch.allclose(p[:, 3:], m.prototypes(b, Y, 3) / math.sqrt(2), atol=1e-6)
    assert torch.allclose(p[2, 3:], torch.tensor([0.7, 0.7]) / math.sqrt(0.98) / math.sqrt(2), atol=1e-6)
    # the joint cosine is the mean of the two halves' cosines
    q = torch.cat([E[:1], torch.tensor([[0.0, 1.0]])], 1) / math.sqrt(2)
    halves = (
        E[:1] @ m.anchored_prototypes(X, Y, 3, E).T + torch.tensor([[0.0, 1.0]]) @ m.prototypes(b, Y, 3).T
    ) / 2
    assert torch.allclose(m.prototype_logits(q, p, 1.0), halves, atol=1e-6)
    with pytest.raises(ValueError, match="joint features"):
        m.anchored_joint_prototypes(X, Y, 3, E)  # no backbone half


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4))
def test_joint_anchored_scores_are_the_mean_of_the_halves(seed, k):
    g = torch.Generator().manual_seed(seed)
    e = torch.nn.functional.normalize(torch.randn(3 * k, 8, generator=g), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(3 * k, 5, generator=g), dim=-1)
    y = torch.arange(3).repeat_interleave(k)
    text = torch.randn(3, 8, generator=g)
    p = m.anchored_joint_prototypes(torch.cat([e, b], 1) / math.sqrt(2), y, 3, text)
    assert torch.allclose(p.norm(dim=-1), torch.ones(3), atol=1e-5)
    q_e = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    q_b = torch.nn.functional.normalize(torch.randn(4, 5, generator=g), dim=-1)
    joint = m.prototype_logits(torch.cat([q_e, q_b], 1) / math.sqrt(2), p, 7.0)
    halves = (m.prototype_logits(q_e, m.anchored_prototypes(e, y, 3, text), 7.0)
              + m.prototype_logits(q_b, m.prototypes(b, y, 3), 7.0)) / 2  # fmt: skip
    assert torch.allclose(joint, halves, atol=1e-4)
