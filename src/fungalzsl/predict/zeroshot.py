"""The zero-shot rule, shared by training (validation Recall@1), evaluation and prediction.

A class is the L2-normalised mean of its descriptions' normalised text embeddings (the CuPL-style
ensemble), and an image's class probabilities are softmax(logit_scale * cos)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from fungalzsl.predict.embed import embed_texts


def class_embeddings(model: Any, by_class: dict[str, list[str]], classes: Sequence[str]) -> torch.Tensor:
    """(C, D) class embeddings: the normalised mean of each class's normalised description embeddings."""
    rows = [F.normalize(embed_texts(model, by_class[c]).mean(0), dim=-1) for c in classes]
    return torch.stack(rows)


def class_probabilities(image_emb: torch.Tensor, class_emb: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """softmax over classes of logit_scale * cosine(image, class)."""
    logits = logit_scale * F.normalize(image_emb, dim=-1) @ F.normalize(class_emb, dim=-1).T
    return logits.softmax(dim=-1)
