"""Metrics against scikit-learn on fixed arrays, ECE by hand, bootstrap intervals, retrieval."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from fungalzsl.eval.metrics import (
    balanced_accuracy,
    bootstrap_ci,
    classification_metrics,
    expected_calibration_error,
    reliability_bins,
    retrieval_recall,
    topk_accuracy,
)


def _fixed(n: int = 200, c: int = 4, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, probs


def test_topk_matches_sklearn():
    labels, probs = _fixed()
    for k in (1, 2, 3):
        assert topk_accuracy(labels, probs, k) == pytest.approx(
            top_k_accuracy_score(labels, probs, k=k, labels=range(4))
        )


def test_balanced_accuracy_matches_sklearn_even_with_an_absent_class():
    labels, probs = _fixed()
    preds = probs.argmax(1)
    assert balanced_accuracy(labels, preds) == pytest.approx(balanced_accuracy_score(labels, preds))
    keep = labels != 2  # class 2 never occurs as a true label but can still be predicted
    with pytest.warns(UserWarning):
        ref = balanced_accuracy_score(labels[keep], preds[keep])
    assert balanced_accuracy(labels[keep], preds[keep]) == pytest.approx(ref)


def test_classification_metrics_match_sklearn():
    labels, probs = _fixed()
    classes = ["a", "b", "c", "d"]
    m = classification_metrics(labels, probs, classes, n_boot=50)
    preds = probs.argmax(1)
    p, r, f, s = precision_recall_fscore_support(labels, preds, labels=range(4), zero_division=0)
    for i, name in enumerate(classes):
        pc = m["per_class"][name]
        assert (pc["precision"], pc["recall"], pc["f1"], pc["support"]) == pytest.approx(
            (p[i], r[i], f[i], s[i])
        )
    assert m["confusion_matrix"] == confusion_matrix(labels, preds).tolist()
    assert m["nll"] == pytest.approx(log_loss(labels, probs, labels=range(4)))
    assert m["macro_f1"] == pytest.approx(f.mean())
    assert m["n"] == 200 and m["recall@1"] == pytest.approx((preds == labels).mean())


def test_ece_hand_computed():
    # 4 images, 15 bins. Confidences 0.9, 0.9 (bin 13: (0.8667, 0.9333]) one right, one wrong:
    # |0.5 - 0.9| * 2/4 = 0.2. Confidence 0.6 (bin 8: (0.5333, 0.6]) right: |1 - 0.6| * 1/4 = 0.1.
    # Confidence 1.0 (last bin) right: 0. ECE = 0.3.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [1.0, 0.0]])
    labels = np.array([0, 1, 1, 0])
    assert expected_calibration_error(labels, probs) == pytest.approx(0.3)
    bins = reliability_bins(labels, probs)
    assert len(bins) == 15
    assert bins[13]["count"] == 2 and bins[13]["accuracy"] == 0.5
    assert bins[8]["count"] == 1 and bins[14]["count"] == 1
    assert sum(b["count"] for b in bins) == 4


def test_ece_is_zero_when_perfectly_calibrated():
    # 10 images at confidence 0.8, 8 of them right.
    probs = np.tile([0.8, 0.2], (10, 1))
    labels = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(labels, probs) == pytest.approx(0.0, abs=1e-12)


def test_bootstrap_interval_contains_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (50, 400, 3200):
        correct = (rng.random(n) < 0.8).astype(float)
        lo, hi = bootstrap_ci(lambda ix, c=correct: c[ix].mean(), n, n_boot=400, seed=1)
        assert lo <= correct.mean() <= hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    # the width scales like 1/sqrt(n): 8x the data, about a third of the width
    assert widths[1] / widths[2] == pytest.approx(np.sqrt(8), rel=0.35)


def test_bootstrap_is_seeded():
    c = np.arange(30) % 2
    f = lambda ix: c[ix].mean()  # noqa: E731
    assert bootstrap_ci(f, 30, 100, seed=5) == bootstrap_ci(f, 30, 100, seed=5)


def test_retrieval_recall_known_case():
    # two classes in 2-D; text 0,1 class 0 at angles near x; text 2 class 1 along y.
    img = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    il = np.array([0, 1, 1])  # the third image is labelled 1 but looks like class 0
    txt = np.array([[1.0, 0.05], [1.0, -0.05], [0.0, 1.0]])
    tl = np.array([0, 0, 1])
    r = retrieval_recall(img, il, txt, tl, ks=(1, 2, 3))
    assert r["image_to_text"] == {"R@1": pytest.approx(2 / 3), "R@2": pytest.approx(2 / 3), "R@3": 1.0}
    # text→image: text 0 → img 0 (class 0) ✓; text 1 → img 0 ✓; text 2 → img 1 ✓
    assert r["text_to_image"]["R@1"] == 1.0


def test_shape_errors_are_reported():
    with pytest.raises(ValueError):
        topk_accuracy(np.zeros(3), np.zeros((4, 2)), 1)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(2, 5), st.integers(0, 2**31 - 1))
def test_metric_invariants(n, c, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    probs = rng.dirichlet(np.ones(c), n)
    accs = [topk_accuracy(labels, probs, k) for k in range(1, c + 1)]
    assert all(a <= b + 1e-12 for a, b in pairwise(accs)) and accs[-1] == 1.0
    ece = expected_calibration_error(labels, probs)
    assert 0.0 <= ece <= 1.0
    # ECE is at most the mean |correct - confidence| (binning can only average errors away)
    correct = probs.argmax(1) == labels
    assert ece <= np.abs(correct - probs.max(1)).mean() + 1e-12
    m = classification_metrics(labels, probs, [f"c{i}" for i in range(c)], n_boot=20, seed=seed)
    assert np.asarray(m["confusion_matrix"]).sum() == n
    lo, hi = m["ci95"]["recall@1"]
    assert lo <= m["recall@1"] <= hi
