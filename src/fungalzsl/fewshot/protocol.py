"""The few-shot protocol behind ``fungalzsl fewshot``: k labelled images per class drawn as shots, the
rest scored, many seeded draws, mean and 95 % confidence interval per k, per method, per source.

* Every image of DIR is embedded once by the run's image tower; each draw then only fits and scores.
* Draw r of k (``numpy.random.default_rng([seed, k, r])``) permutes each class's images and takes the
  first ``k`` as shots; all methods are scored on the same draws (a paired comparison).
* A class with fewer than ``k + 1`` images gives ``n - 1`` shots (at least one image of it is always
  scored); such a k is reported with ``capped: true`` and its real ``shots_per_class``. A class with a
  single image cannot give a shot: it is an error.
* k = 0 is the run's zero-shot classifier on all images (its interval: 1,000 bootstrap resamples of them).
  The method ``zeroshot`` scores that same classifier on each draw's query images (no shot used): the
  paired reference an adapter has to beat at the same k.
* The interval of k ≥ 1 is Student's t over the draws: ``mean ± t(0.975, R-1) · sd / √R``.
* Scores: balanced accuracy (mean per-class recall over the classes present) and accuracy, on all
  scored images and on those of each source (:class:`fungalzsl.labelled.LabelledImage` ``source``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fungalzsl.errors import fail
from fungalzsl.fewshot.adapt import EmbeddedShots
from fungalzsl.fewshot.adapter import fit_adapter

N_BOOT = 1000
ZERO_SHOT = "zeroshot"  # the run's classifier on each draw's query: the reference arm, no adapter


@dataclass
class Draw:
    """One draw: the indices of the shots and of the images scored."""

    shots: np.ndarray
    query: np.ndarray


def shots_per_class(counts: dict[str, int], k: int) -> dict[str, int]:
    """Shots each class gives at ``k``: ``min(k, n - 1)``; a class with one image is an error."""
    single = [c for c, n in counts.items() if n < 2]
    if single:
        raise fail(
            f"class(es) {', '.join(single)} have a single image: nothing is left to score after one shot",
            "add at least two images of every class",
        )
    return {c: min(k, n - 1) for c, n in counts.items()}


def draw(labels: np.ndarray, shots: Sequence[int], seed: int, k: int, r: int) -> Draw:
    """Shots and query of draw ``r`` at ``k`` (``shots[c]`` images of class c), stratified and seeded."""
    rng = np.random.default_rng([seed, k, r])
    picked = [rng.permutation(np.flatnonzero(labels == c))[: shots[c]] for c in range(len(shots))]
    chosen = np.sort(np.concatenate(picked))
    return Draw(chosen, np.setdiff1d(np.arange(len(labels)), chosen))


def balanced_accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    return float(np.mean([(preds[labels == c] == c).mean() for c in np.unique(labels)]))


def scores(labels: np.ndarray, preds: np.ndarray, sources: np.ndarray) -> dict[str, Any]:
    """Balanced accuracy and accuracy on all images and per source."""
    out: dict[str, Any] = {
        "balanced_accuracy": balanced_accuracy(labels, preds),
        "accuracy": float((labels == preds).mean()),
        "n": len(labels),
    }
    out["per_source"] = {
        s: {
            "balanced_accuracy": balanced_accuracy(labels[sources == s], preds[sources == s]),
            "accuracy": float((labels[sources == s] == preds[sources == s]).mean()),
            "n": int((sources == s).sum()),
        }
        for s in sorted(set(sources.tolist()))
    }
    return out


def t_interval(values: Sequence[float]) -> list[float]:
    """95 % Student-t interval of the mean (the mean twice for a single value)."""
    from scipy.stats import t

    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return [mean, mean]
    half = float(t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return [max(mean - half, 0.0), min(mean + half, 1.0)]


def _bootstrap(labels: np.ndarray, preds: np.ndarray, seed: int) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(labels), size=(N_BOOT, len(labels)))
    bal = [balanced_accuracy(labels[i], preds[i]) for i in idx]
    acc = (labels[idx] == preds[idx]).mean(axis=1)
    q = [2.5, 97.5]
    return {"balanced_accuracy": np.percentile(bal, q).tolist(), "accuracy": np.percentile(acc, q).tolist()}


def zero_shot(embedded: EmbeddedShots, zs_logits: torch.Tensor, seed: int) -> dict[str, Any]:
    """k = 0: the run's own classifier on every image."""
    y, pred = embedded.labels.numpy(), zs_logits.argmax(-1).numpy()
    out = scores(y, pred, np.asarray(embedded.sources))
    out["ci95"] = _bootstrap(y, pred, seed)
    return out


def _summary(per_draw: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, interval and values over the draws; per source the mean over the draws that scored it."""
    out: dict[str, Any] = {}
    for key in ("balanced_accuracy", "accuracy"):
        values = [d[key] for d in per_draw]
        out[key] = {"mean": float(np.mean(values)), "ci95": t_interval(values), "values": values}
    sources = sorted({s for d in per_draw for s in d["per_source"]})
    out["per_source"] = {
        s: {
            key: float(np.mean([d["per_source"][s][key] for d in per_draw if s in d["per_source"]]))
            for key in ("balanced_accuracy", "accuracy")
        }
        for s in sources
    }
    return out


def run_protocol(
    embedded: EmbeddedShots,
    zs_logits: torch.Tensor,
    classes: list[str],
    logit_scale: float,
    *,
    ks: Sequence[int],
    repeats: int,
    methods: Sequence[str],
    seed: int = 0,
    advance: Callable[[], None] | None = None,
    class_embeddings: torch.Tensor | None = None,
    features: str = "embedding",
    views: int = 1,
) -> dict[str, Any]:
    """Every (k, method) over ``repeats`` draws; ``advance`` is called once per draw (a progress bar).

    ``class_embeddings`` (C, D): the run's class text embeddings, for the ``anchored`` method. The
    adapters fit and score ``embedded.inputs(features, views)``; ``zs_logits`` are the zero-shot logits
    of the centre crops, as the Classifier computes them."""
    y = embedded.labels.numpy()
    x = embedded.inputs(features, views)
    counts = {c: int((y == i).sum()) for i, c in enumerate(classes)}
    sources = np.asarray(embedded.sources)
    rows: list[dict[str, Any]] = []
    for k in ks:
        shots = shots_per_class(counts, k)
        per_method: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
        params: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
        for r in range(repeats):
            d = draw(y, [shots[c] for c in classes], seed, k, r)
            for method in methods:
                if method == ZERO_SHOT:
                    pred, fitted = zs_logits[d.query].argmax(-1).numpy(), {}
                else:
                    adapter = fit_adapter(method, x[d.shots], embedded.labels[d.shots], classes, zs_logits[d.shots],
                                          logit_scale, class_embeddings, features, views)  # fmt: skip
                    with torch.no_grad():
                        pred = adapter.logits(x[d.query], zs_logits[d.query]).argmax(-1).numpy()
                    fitted = adapter.params
                per_method[method].append(scores(y[d.query], pred, sources[d.query]))
                params[method].append(fitted)
            if advance:
                advance()
        capped = any(n < k for n in shots.values())
        for method in methods:
            rows.append({"k": k, "method": method, "features": features, "views": views,
                         "shots_per_class": shots, "capped": capped,
                         **_summary(per_method[method]), "params": params[method]})  # fmt: skip
    return {"images_per_class": counts, "results": rows}
