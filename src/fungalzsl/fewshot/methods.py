"""Few-shot classifiers on image embeddings: pure functions on tensors, no model, no files.

Every function takes L2-normalised image embeddings ``x`` (N, D) and integer labels (N,) in ``0..C-1``.

* **prototype** (nearest class centroid): ``p_k = normalise(mean of the shots of class k)``,
  ``logits = s · x p_kᵀ`` (``s`` the run's logit scale, so the softmax is as sharp as zero-shot's).
* **anchored** (text-anchored prototypes): each class's text embedding ``t_k`` counts as one more shot of
  that class: ``p_k = normalise(Σ shots of k + w · t̃_k)``, ``w`` = :data:`ANCHOR_WEIGHT` (one virtual
  shot, fixed: nothing is tuned), ``logits = s · x p_kᵀ``. Image and text embeddings sit in different
  regions of the space (the modality gap), so the text is first moved to the images:
  ``t̃_k = normalise(t_k − mean_j t_j + x̄)``, ``x̄`` the mean of the class means of the shots (each class
  counts once). With one shot the prototype is half text, half image; with many shots the images rule.
  On ``both`` features (``[e, b] / √2``, :mod:`fungalzsl.fewshot.features`) the text anchors the embedding
  half and the backbone half is the plain prototype: ``p_k = [anchored p_k(e), prototype p_k(b)] / √2``
  (:func:`anchored_joint_prototypes`), so ``cos(x, p_k)`` is the mean of the two halves' cosines.
* **probe** (multinomial logistic regression): ``logits = x Wᵀ + b``, fitted by L-BFGS from zero in
  float64 on ``mean CE + λ‖W‖²`` (the bias is not penalised), so the same shots give the same weights.
  λ is chosen from :data:`PROBE_L2_GRID` by stratified cross-validation on the shots (fold ``j mod F``
  for the j-th shot of each class, ``F = min(3, fewest shots of a class)``) when every class has at least
  2 shots, else :data:`PROBE_L2_DEFAULT`.
* **tip** (Tip-Adapter, Zhang et al. 2022, training-free): a cache of the shots' embeddings ``F`` (N, D)
  and one-hot labels ``L`` (N, C), blended with the zero-shot logits:
  ``logits = zs_logits + α · exp(-β (1 - x Fᵀ)) L``. β sets how sharply an image must resemble a shot
  (β = 5.5 is the paper's default), α how much the cache weighs against the text classifier (in logit
  units: the zero-shot logits are ``s · cos``). α and β are chosen from :data:`TIP_ALPHA_GRID` ×
  :data:`TIP_BETA_GRID` by leave-one-out on the shots when every class has at least 2 shots, else
  :data:`TIP_DEFAULT`.

Selection scores are balanced accuracy, ties broken by the lower mean cross-entropy, then by the earlier
grid entry (grids are ordered from the most to the least conservative)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

PROBE_L2_GRID = (1e-1, 1e-2, 1e-3, 1e-4)
PROBE_L2_DEFAULT = 1e-2
PROBE_MAX_ITER = 200
TIP_ALPHA_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
TIP_BETA_GRID = (1.0, 3.0, 5.5, 10.0)
ANCHOR_WEIGHT = 1.0  # the class text counts as one shot
TIP_DEFAULT = (10.0, 5.5)  # (alpha, beta) when leave-one-out is impossible (a class with one shot)


def _check(x: torch.Tensor, labels: torch.Tensor, n_classes: int) -> None:
    if x.ndim != 2 or labels.ndim != 1 or x.shape[0] != labels.shape[0]:
        raise ValueError(
            f"need (N, D) embeddings and (N,) labels, got {tuple(x.shape)} and {tuple(labels.shape)}"
        )
    missing = sorted(set(range(n_classes)) - set(labels.tolist()))
    if missing:
        raise ValueError(f"classes {missing} have no shots")


def balanced_accuracy(labels: torch.Tensor, preds: torch.Tensor) -> float:
    """Mean per-class recall over the classes present in ``labels``."""
    recalls = [(preds[labels == c] == c).double().mean() for c in labels.unique()]
    return float(torch.stack(recalls).mean()) if recalls else float("nan")


def prototypes(x: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(C, D) normalised class centroids of the normalised shots."""
    _check(x, labels, n_classes)
    x = F.normalize(x.float(), dim=-1)
    sums = torch.zeros(n_classes, x.shape[1]).index_add_(0, labels, x)
    return F.normalize(sums, dim=-1)


def anchored_prototypes(
    x: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    text: torch.Tensor,
    weight: float = ANCHOR_WEIGHT,
) -> torch.Tensor:
    """(C, D) prototypes of the normalised shots with each class's text embedding as ``weight`` shots."""
    _check(x, labels, n_classes)
    if text.shape != (n_classes, x.shape[1]):
        raise ValueError(f"need ({n_classes}, {x.shape[1]}) class text embeddings, got {tuple(text.shape)}")
    x = F.normalize(x.float(), dim=-1)
    t = F.normalize(text.float(), dim=-1)
    sums = torch.zeros(n_classes, x.shape[1]).index_add_(0, labels, x)
    class_means = sums / torch.bincount(labels, minlength=n_classes).unsqueeze(1)
    moved = F.normalize(t - t.mean(0) + class_means.mean(0), dim=-1)
    return F.normalize(sums + weight * moved, dim=-1)


def anchored_joint_prototypes(
    x: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    text: torch.Tensor,
    weight: float = ANCHOR_WEIGHT,
) -> torch.Tensor:
    """(C, D + F) prototypes of ``both`` features ``[e, b] / √2``: the first ``D = text.shape[1]`` columns
    anchored on the text, the rest the plain prototypes of the backbone half; each half normalised, / √2."""
    _check(x, labels, n_classes)
    d = text.shape[-1]
    if text.ndim != 2 or x.shape[1] <= d:
        raise ValueError(
            f"need (N, {d} + F) joint features and (C, D) text, got {tuple(x.shape)}, {tuple(text.shape)}"
        )
    emb = anchored_prototypes(x[:, :d], labels, n_classes, text, weight)
    return torch.cat([emb, prototypes(x[:, d:], labels, n_classes)], 1) / 2**0.5


def prototype_logits(x: torch.Tensor, protos: torch.Tensor, scale: float) -> torch.Tensor:
    """(N, C) ``scale · cos(x, p_k)``."""
    return scale * F.normalize(x.float(), dim=-1) @ F.normalize(protos.float(), dim=-1).T


def fit_probe(
    x: torch.Tensor, labels: torch.Tensor, n_classes: int, l2: float = PROBE_L2_DEFAULT
) -> tuple[torch.Tensor, torch.Tensor]:
    """(W (C, D), b (C,)) of the L2-regularised logistic regression (float32 results)."""
    _check(x, labels, n_classes)
    x64 = F.normalize(x.double(), dim=-1)
    w = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=PROBE_MAX_ITER, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")  # fmt: skip

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x64 @ w.T + b, labels) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach().float(), b.detach().float()


def probe_logits(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1) @ w.float().T + b.float()


def _folds(labels: torch.Tensor, n_folds: int) -> torch.Tensor:
    """Fold of each shot: the j-th shot of its class (in the given order) goes to fold j mod n_folds."""
    fold = torch.empty_like(labels)
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        fold[idx] = torch.arange(len(idx)) % n_folds
    return fold


def _rank(labels: torch.Tensor, logits: torch.Tensor) -> tuple[float, float]:
    """Higher is better: (balanced accuracy, -mean cross-entropy)."""
    return balanced_accuracy(labels, logits.argmax(-1)), -float(F.cross_entropy(logits.double(), labels))


def choose_probe_l2(x: torch.Tensor, labels: torch.Tensor, n_classes: int) -> float:
    """λ by stratified cross-validation on the shots (module docstring), or the default."""
    _check(x, labels, n_classes)
    fewest = int(torch.bincount(labels, minlength=n_classes).min())
    if fewest < 2:
        return PROBE_L2_DEFAULT
    fold = _folds(labels, min(3, fewest))
    best, best_rank = PROBE_L2_DEFAULT, None
    for l2 in PROBE_L2_GRID:
        held = torch.empty(len(labels), n_classes)
        for f in fold.unique():
            train = fold != f
            w, b = fit_probe(x[train], labels[train], n_classes, l2)
            held[~train] = probe_logits(x[~train], w, b)
        rank = _rank(labels, held)
        if best_rank is None or rank > best_rank:
            best, best_rank = l2, rank
    return best


def cache_affinity(x: torch.Tensor, keys: torch.Tensor, beta: float) -> torch.Tensor:
    """(N, M) ``exp(-β (1 - cos(x, key)))``."""
    cos = F.normalize(x.float(), dim=-1) @ F.normalize(keys.float(), dim=-1).T
    return torch.exp(-beta * (1.0 - cos))


def tip_logits(
    x: torch.Tensor,
    zs_logits: torch.Tensor,
    keys: torch.Tensor,
    key_labels: torch.Tensor,
    n_classes: int,
    alpha: float,
    beta: float,
) -> torch.Tensor:
    """(N, C) ``zs_logits + α · exp(-β (1 - x Fᵀ)) · onehot(key_labels)``."""
    onehot = F.one_hot(key_labels, n_classes).float()
    return zs_logits.float() + alpha * cache_affinity(x, keys, beta) @ onehot


def choose_tip(
    x: torch.Tensor,
    zs_logits: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    alphas: Sequence[float] = TIP_ALPHA_GRID,
    betas: Sequence[float] = TIP_BETA_GRID,
) -> tuple[float, float]:
    """(α, β) by leave-one-out on the shots: each shot is scored by the cache of the others."""
    _check(x, labels, n_classes)
    if int(torch.bincount(labels, minlength=n_classes).min()) < 2:
        return TIP_DEFAULT
    onehot = F.one_hot(labels, n_classes).float()
    best, best_rank = TIP_DEFAULT, None
    for beta in betas:
        affinity = cache_affinity(x, x, beta)
        affinity.fill_diagonal_(0.0)  # leave the shot itself out of its own cache
        cache = affinity @ onehot
        for alpha in alphas:
            rank = _rank(labels, zs_logits.float() + alpha * cache)
            if best_rank is None or rank > best_rank:
                best, best_rank = (float(alpha), float(beta)), rank
    return best
