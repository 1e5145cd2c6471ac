"""Attribute-wise zero-shot scoring (``--classifier attributes``).

Instead of comparing an image with one embedding per class, the image is scored against short prompts
for visible attributes (round cells, short tubes, long filaments, branching, a dense network, buds,
chains of spores, ...), and a class is scored by the attributes its descriptions name. The class →
attribute map is read off the description text alone: w[c, a] is the cosine similarity of the mean
embedding of class c's descriptions with attribute prompt a, centred over the classes (what sets the
class apart, not what all share) and scaled to unit length per class. An image's attribute profile is
its similarities to the prompts, standardised over the prompts; its class score is the profile's dot
product with w[c]. Nothing is fitted on images: a class known only from text gets its map the same way.

``--classifier blend`` (:class:`BlendClassifier`) mixes the two: per image, the attribute scores are
standardised over the classes and put on the mean classifier's location and spread for that image,

    s(x, c) = (1 - w) * m(x, c) + w * (mean_c m(x) + std_c m(x) * z_c(a(x)))

with m the ``mean`` classifier's logits, a the attribute logits and z standardisation over the classes.
w = 0 is ``mean`` exactly (logits too, hence stacking too); w = 1 ranks as ``attributes``. The scores
stay in the mean classifier's units (logit scale times cosine), so stacking's gamma is in cosine units.
The weight is fixed in advance (``BLEND_WEIGHT``, ``--blend-weight``), never fitted on test images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from fungalzsl.errors import fail
from fungalzsl.eval.methods import BLEND_WEIGHT

# Visible attributes, worded plainly; none names a class. Users pass their own with ``prompts``.
ATTRIBUTE_PROMPTS = (
    "round cells",
    "small round dots",
    "large round discs",
    "oval cells",
    "small buds on the cells",
    "short thin tubes sprouting from round cells",
    "germ tubes",
    "long thin filaments",
    "branching filaments",
    "many branches",
    "a dense tangled network",
    "a sparse field of separate cells",
    "no branches",
    "chains of tiny dots at branch tips",
    "clusters of tiny dots at branch tips",
    "a web of branches covering the field",
)


def attribute_weights(class_emb: torch.Tensor, attr_emb: torch.Tensor) -> torch.Tensor:
    """(C, A) class → attribute map from class text embeddings (C, D) and attribute prompts (A, D)."""
    sims = F.normalize(class_emb.float(), dim=-1) @ F.normalize(attr_emb.float(), dim=-1).T
    centred = sims - sims.mean(dim=0, keepdim=True)
    return F.normalize(centred, dim=-1)


def attribute_logits(
    image_emb: torch.Tensor, attr_emb: torch.Tensor, weights: torch.Tensor, scale: float
) -> torch.Tensor:
    """(N, C) class scores of images (N, D) through their standardised attribute profile."""
    sims = F.normalize(image_emb.float(), dim=-1) @ F.normalize(attr_emb.float(), dim=-1).T
    z = (sims - sims.mean(dim=1, keepdim=True)) / sims.std(dim=1, keepdim=True).clamp_min(1e-6)
    return scale * z @ weights.T


def attribute_parts(
    model: Any,
    classes: Sequence[str],
    by_class: dict[str, list[str]],
    prompts: Sequence[str] = ATTRIBUTE_PROMPTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompts' embeddings (A, D) and the class → attribute map (C, A) of ``classes``."""
    from fungalzsl.predict.embed import embed_texts
    from fungalzsl.predict.zeroshot import class_embeddings

    class_emb = class_embeddings(model, by_class, list(classes))
    attr_emb = embed_texts(model, list(prompts))
    return attr_emb, attribute_weights(class_emb, attr_emb)


def check_blend_weight(weight: float) -> float:
    """``weight`` as a float in [0, 1], or a one-line error."""
    if not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:  # NaN fails both comparisons
        raise fail(
            f"--blend-weight {weight}: must be in [0, 1]", "0 is the mean classifier, 1 attributes alone"
        )
    return float(weight)


def blend_logits(mean_logits: torch.Tensor, attr_logits: torch.Tensor, weight: float) -> torch.Tensor:
    """(N, C) blended scores (module docstring): attribute scores on each row's mean-score scale."""
    m, a = mean_logits.float(), attr_logits.float()
    za = (a - a.mean(dim=1, keepdim=True)) / a.std(dim=1, correction=0, keepdim=True).clamp_min(1e-12)
    mapped = m.mean(dim=1, keepdim=True) + m.std(dim=1, correction=0, keepdim=True) * za
    return (1.0 - weight) * m + weight * mapped


@dataclass
class BlendClassifier:
    """``mean`` and ``attributes`` classifiers of the same classes, blended with ``weight``."""

    mean: Any
    attributes: Any
    weight: float = BLEND_WEIGHT
    method: str = "blend"

    @property
    def classes(self) -> list[str]:
        return self.mean.classes

    @property
    def logit_scale(self) -> float:
        return self.mean.logit_scale

    @logit_scale.setter
    def logit_scale(self, value: float) -> None:  # both scale linearly, so the blend does too
        self.mean.logit_scale = value
        self.attributes.logit_scale = value

    def logits(self, image_emb: torch.Tensor) -> torch.Tensor:
        base = self.mean.logits(image_emb)
        if self.weight == 0.0:
            return base
        return blend_logits(base, self.attributes.logits(image_emb), self.weight)

    def probabilities(self, image_emb: torch.Tensor) -> torch.Tensor:
        return self.logits(image_emb).softmax(dim=-1)
