"""Attribute-wise zero-shot scoring (``--classifier attributes``).

Instead of comparing an image with one embedding per class, the image is scored against short prompts
for visible attributes (round cells, short tubes, long filaments, branching, a dense network, buds,
chains of spores, ...), and a class is scored by the attributes its descriptions name. The class →
attribute map is read off the description text alone: w[c, a] is the cosine similarity of the mean
embedding of class c's descriptions with attribute prompt a, centred over the classes (what sets the
class apart, not what all share) and scaled to unit length per class. An image's attribute profile is
its similarities to the prompts, standardised over the prompts; its class score is the profile's dot
product with w[c]. Nothing is fitted on images: a class known only from text gets its map the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

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
