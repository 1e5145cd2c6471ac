"""Calibrated stacking for generalised zero-shot (Chao et al., 2016): ``--stack-budget``.

A model fine-tuned on some classes scores them higher than any class it knows only from text, so an
image of a new class goes to the trained class it looks most like. Calibrated stacking subtracts one
constant ``gamma`` from the scores of the classes seen in training before the argmax:

    predict(x) = argmax_c  score(x, c) - gamma * [c was seen in training]

``gamma`` is chosen without any image of an unseen class, by a rule stated in advance, the seen-class
budget: on the run's own validation images (trained classes only), scored among all the evaluated
classes, the largest shift that moves at most ``budget`` of the images that were right at gamma 0 to
an unseen class. An image of seen class y right at gamma 0 stays right while its margin
``m = score(x, y) - max_unseen score(x, u)`` exceeds gamma; with the right images' margins sorted
``m_1 <= ... <= m_n`` and ``k = floor(budget * n)``, gamma is the midpoint between ``m_{k+1}`` and the
largest margin below it (0 if none): at most k of them are lost (exactly k when no margins tie). Scores are in the classifier's logits divided by its logit
scale (cosine units for ``mean``), so gamma does not depend on the temperature."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fungalzsl.errors import fail


def seen_mask(classes: Sequence[str], seen: Sequence[str]) -> torch.Tensor:
    """Bool (C,) mask of ``classes`` trained on; at least one seen and one unseen class are required."""
    mask = torch.tensor([c in set(seen) for c in classes], dtype=torch.bool)
    if not bool(mask.any()):
        raise fail(
            "calibrated stacking: none of the evaluated classes was trained on",
            "evaluate a fine-tuned run on data that includes its trained classes",
        )
    if bool(mask.all()):
        raise fail(
            "calibrated stacking needs a class the run was not trained on",
            "add descriptions and images of a new class, or drop --stack-budget",
        )
    return mask


def check_budget(budget: float) -> float:
    """``budget`` as a float in [0, 1), or a one-line error."""
    if not isinstance(budget, (int, float)) or math.isnan(budget) or not 0.0 <= budget < 1.0:
        raise fail(
            f"--stack-budget {budget}: must be in [0, 1)", "e.g. 0.05 (lose at most 5% of seen images)"
        )
    return float(budget)


def budget_gamma(scores: torch.Tensor, labels: Sequence[int], mask: torch.Tensor, budget: float) -> float:
    """The seen-class-budget shift (module docstring) from (N, C) unscaled scores of images whose
    ``labels`` are all seen classes. 0.0 when no image is right at gamma 0."""
    budget = check_budget(budget)
    y = torch.as_tensor(list(labels), dtype=torch.long)
    if scores.ndim != 2 or scores.shape[0] != y.numel() or scores.shape[1] != mask.numel():
        raise fail(
            f"calibrated stacking: scores {tuple(scores.shape)} do not match {y.numel()} labels and {mask.numel()} classes",
            "pass (N, C) scores",
        )  # fmt: skip
    if y.numel() and not bool(mask[y].all()):
        raise fail(
            "calibrated stacking: a calibration image is of an unseen class", "calibrate on seen classes only"
        )
    s = scores.double()
    right = s.argmax(dim=1) == y
    if not bool(right.any()):
        return 0.0
    own = s[right].gather(1, y[right, None]).squeeze(1)
    margins = (own - s[right][:, ~mask].max(dim=1).values).sort().values
    k = math.floor(budget * margins.numel() + 1e-9)
    above = float(margins[k])  # k < n since budget < 1: the smallest margin that must survive
    lower = margins[margins < above]  # tied margins are kept or lost together: keep them
    below = float(lower[-1]) if lower.numel() else 0.0
    return max(0.0, (below + above) / 2)


@dataclass
class StackedClassifier:
    """``base``'s logits minus ``gamma * base.logit_scale`` on the seen classes (calibrated stacking)."""

    base: Any
    mask: torch.Tensor
    gamma: float

    @property
    def classes(self) -> list[str]:
        return self.base.classes

    @property
    def method(self) -> str:
        return f"{self.base.method}+stacking"

    @property
    def logit_scale(self) -> float:
        return self.base.logit_scale

    @logit_scale.setter
    def logit_scale(self, value: float) -> None:
        self.base.logit_scale = value

    def logits(self, image_emb: torch.Tensor) -> torch.Tensor:
        out = self.base.logits(image_emb)
        return out - (self.gamma * self.base.logit_scale) * self.mask.to(out.dtype)

    def probabilities(self, image_emb: torch.Tensor) -> torch.Tensor:
        return self.logits(image_emb).softmax(dim=-1)


def stack(
    base: Any, val_emb: torch.Tensor, val_labels: Sequence[int], mask: torch.Tensor, budget: float
) -> tuple[StackedClassifier, dict[str, Any]]:
    """``base`` calibrated by the seen-class budget on validation embeddings, and what was fitted."""
    with torch.no_grad():
        scores = base.logits(val_emb) / base.logit_scale
    gamma = budget_gamma(scores, val_labels, mask, budget)
    info = {"rule": "seen-class budget", "budget": budget, "gamma": gamma, "n_val": len(val_labels),
            "seen": [c for c, m in zip(base.classes, mask.tolist()) if m]}  # fmt: skip
    return StackedClassifier(base, mask, gamma), info
