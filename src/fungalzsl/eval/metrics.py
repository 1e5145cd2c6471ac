"""Classification, calibration and retrieval metrics for zero-shot predictions.

Everything takes plain arrays (true label ids, an (N, C) probability matrix, embeddings) so the numbers
can be checked against scikit-learn and by hand. Recall@1 is top-1 accuracy: the paper's number."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

ECE_BINS = 15
RETRIEVAL_KS = (1, 5, 10)


def _check(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(f"need labels (N,) and probs (N, C); got {labels.shape} and {probs.shape}")
    return labels, probs


def topk_accuracy(labels: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Fraction of rows whose true label is among the k most probable classes (Recall@k)."""
    labels, probs = _check(labels, probs)
    if len(labels) == 0:
        return float("nan")
    k = min(k, probs.shape[1])
    # argsort on the negated scores with a stable sort: ties go to the lower class index, as argmax does.
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def balanced_accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    """Mean per-class recall over the classes that occur in ``labels`` (as sklearn defines it)."""
    labels = np.asarray(labels)
    preds = np.asarray(preds)
    present = np.unique(labels)
    if len(present) == 0:
        return float("nan")
    return float(np.mean([(preds[labels == c] == c).mean() for c in present]))


def reliability_bins(labels: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Equal-width confidence bins (lo, hi] over the top-1 probability, with accuracy and mean confidence.

    Right-closed bins as in Guo et al. (2017): a confidence of exactly 1.0 falls in the last bin."""
    labels, probs = _check(labels, probs)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        m = idx == b
        n = int(m.sum())
        bins.append(
            {
                "lo": b / n_bins,
                "hi": (b + 1) / n_bins,
                "count": n,
                "accuracy": float(correct[m].mean()) if n else 0.0,
                "confidence": float(conf[m].mean()) if n else 0.0,
            }
        )
    return bins


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE = sum over bins of |bin| / N * |accuracy(bin) - confidence(bin)| (top-1 confidence)."""
    labels, probs = _check(labels, probs)
    if len(labels) == 0:
        return float("nan")
    bins = reliability_bins(labels, probs, n_bins)
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / len(labels))


def negative_log_likelihood(labels: np.ndarray, probs: np.ndarray) -> float:
    labels, probs = _check(labels, probs)
    p = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
    return float(-np.log(p).mean()) + 0.0  # + 0.0: no "-0.0" in metrics.json when every p is 1


def bootstrap_ci(
    stat: Callable[[np.ndarray], float],
    n: int,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(indices)`` over ``n`` items resampled with replacement.

    ``stat`` receives an index array so one helper serves accuracy, balanced accuracy and ECE alike."""
    if n == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    values = np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)], dtype=np.float64)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return (float("nan"), float("nan"))
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return (float(lo), float(hi))


def retrieval_recall(
    image_emb: np.ndarray,
    image_labels: np.ndarray,
    text_emb: np.ndarray,
    text_labels: np.ndarray,
    ks: Sequence[int] = RETRIEVAL_KS,
) -> dict[str, dict[str, float]]:
    """Image→text and text→image Recall@k over individual descriptions.

    A retrieval counts as a hit when any of the top-k items has the query's class: with many
    descriptions per class there is no single "correct" caption, only a correct class."""
    img = np.asarray(image_emb, dtype=np.float64)
    txt = np.asarray(text_emb, dtype=np.float64)
    img = img / np.maximum(np.linalg.norm(img, axis=1, keepdims=True), 1e-12)
    txt = txt / np.maximum(np.linalg.norm(txt, axis=1, keepdims=True), 1e-12)
    il = np.asarray(image_labels)
    tl = np.asarray(text_labels)
    sims = img @ txt.T
    out: dict[str, dict[str, float]] = {"image_to_text": {}, "text_to_image": {}}
    order_i2t = np.argsort(-sims, axis=1, kind="stable")
    order_t2i = np.argsort(-sims.T, axis=1, kind="stable")
    for k in ks:
        hit_i2t = (tl[order_i2t[:, :k]] == il[:, None]).any(axis=1)
        hit_t2i = (il[order_t2i[:, :k]] == tl[:, None]).any(axis=1)
        out["image_to_text"][f"R@{k}"] = float(hit_i2t.mean()) if len(il) else float("nan")
        out["text_to_image"][f"R@{k}"] = float(hit_t2i.mean()) if len(tl) else float("nan")
    return out


def classification_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    n_bins: int = ECE_BINS,
) -> dict[str, Any]:
    """All per-image metrics of one evaluation, JSON-ready (the core of metrics.json)."""
    labels, probs = _check(labels, probs)
    n, c = probs.shape
    if c != len(classes):
        raise ValueError(f"{c} probability columns but {len(classes)} classes")
    preds = probs.argmax(axis=1)
    ids = list(range(c))
    prec, rec, f1, support = precision_recall_fscore_support(labels, preds, labels=ids, zero_division=0)
    correct = (preds == labels).astype(np.float64)
    per_class: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(classes):
        mask = labels == i
        per_class[name] = {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "mean_probability_true": float(probs[mask, i].mean()) if mask.any() else None,
        }
        if mask.any():
            sub = np.flatnonzero(mask)
            per_class[name]["recall_ci95"] = list(
                bootstrap_ci(lambda ix, sub=sub: correct[sub[ix]].mean(), len(sub), n_boot, seed)
            )
    metrics: dict[str, Any] = {
        "n": int(n),
        "recall@1": topk_accuracy(labels, probs, 1),
        "recall@2": topk_accuracy(labels, probs, 2),
        "balanced_accuracy": balanced_accuracy(labels, preds),
        "macro_f1": float(np.mean(f1)) if c else float("nan"),
        "ece": expected_calibration_error(labels, probs, n_bins),
        "nll": negative_log_likelihood(labels, probs),
        "mean_confidence": float(probs.max(axis=1).mean()) if n else float("nan"),
        "ci95": {
            "recall@1": list(bootstrap_ci(lambda ix: correct[ix].mean(), n, n_boot, seed)),
            "balanced_accuracy": list(
                bootstrap_ci(lambda ix: balanced_accuracy(labels[ix], preds[ix]), n, n_boot, seed)
            ),
            "ece": list(
                bootstrap_ci(
                    lambda ix: expected_calibration_error(labels[ix], probs[ix], n_bins), n, n_boot, seed
                )
            ),
        },
        "bootstrap": {"resamples": n_boot, "seed": seed, "method": "percentile"},
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(labels, preds, labels=ids).tolist(),
        "ece_bins": n_bins,
        "reliability": reliability_bins(labels, probs, n_bins),
    }
    return metrics


def per_source_metrics(
    labels: np.ndarray, preds: np.ndarray, sources: Sequence[str | None], classes: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Accuracy per image source, with its count and the recall of each class the source has.

    Real images come from a few labs or repositories, each with its own optics: a total can hide a
    model that works on one source only, so every real-image evaluation reports this beside the total.
    Sources are listed in order of first appearance; an image without a source counts as "unknown"."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    names = ["unknown" if s is None else s for s in sources]
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(names):
        mask = np.array([n == name for n in names], dtype=bool)
        y, p = labels[mask], preds[mask]
        per_class = {
            classes[c]: {"n": int((y == c).sum()), "correct": int(((y == c) & (p == c)).sum()),
                         "recall": float((p[y == c] == c).mean())}
            for c in range(len(classes)) if (y == c).any()
        }  # fmt: skip
        out[name] = {"n": int(mask.sum()), "accuracy": float((y == p).mean()), "per_class": per_class}
    return out
