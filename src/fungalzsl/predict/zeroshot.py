"""The zero-shot rule, the one place where training (validation), evaluation and prediction score images.

For class k with descriptions d_k1 … d_kn, an image x, the text tower T and the image tower I:

    class embedding    c_k  = normalise( (1/n) Σ_i normalise(T(d_ki)) )      (the CuPL-style ensemble)
    logit scale        s    = min(exp(logit_scale), 100)                      (1/τ, capped as in CLIP)
    probabilities      p(k | x) = softmax_k( s · cos(I(x), c_k) )

Training writes the c_k of its description set to ``RUN/class_embeddings.safetensors`` (tensor
``embeddings``, C × D, rows in ``config["classes"]`` order; metadata ``classes``, the names as JSON),
so evaluation and prediction need no text model: :func:`save_class_embeddings` is the one writer and
:func:`load_class_embeddings` the one reader. :func:`class_probabilities_numpy` is the same softmax
for the ONNX path; torch is imported inside the torch functions so that path can use this module."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

# CLIP's ceiling on 1/tau: past it, a sharper softmax only makes training unstable.
MAX_LOGIT_SCALE = 100.0


def clamp_logit_scale(log_scale: torch.Tensor) -> torch.Tensor:
    """s = min(exp(log_scale), 100): the scale every softmax uses; differentiable below the cap."""
    return log_scale.exp().clamp(max=MAX_LOGIT_SCALE)


def model_logit_scale(model: Any) -> float:
    """s of a model whose ``logit_scale`` is log(1/τ) (tensor, parameter or float); 100 if it has none.

    Computed on the CPU from the stored value, so every caller gets the same float on any device."""
    import torch

    s = getattr(model, "logit_scale", None)
    if s is None:
        return MAX_LOGIT_SCALE
    value = float(s.detach().float().reshape(-1)[0]) if isinstance(s, torch.Tensor) else float(s)
    return float(clamp_logit_scale(torch.tensor(value)))


def class_embeddings(model: Any, by_class: dict[str, list[str]], classes: Sequence[str]) -> torch.Tensor:
    """(C, D) class embeddings c_k: the normalised mean of each class's normalised description embeddings.

    ``model`` needs only ``encode_text`` and ``eval`` (training passes an encoder over cached features)."""
    import torch
    import torch.nn.functional as F

    from fungalzsl.predict.embed import embed_texts

    rows = [F.normalize(embed_texts(model, by_class[c]).mean(0), dim=-1) for c in classes]
    return torch.stack(rows)


def class_logits(image_emb: torch.Tensor, class_emb: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """(N, C) logits s · cos(image, class) of (N, D) image and (C, D) class embeddings."""
    import torch.nn.functional as F

    x, c = F.normalize(image_emb.float(), dim=-1), F.normalize(class_emb.float(), dim=-1)
    return logit_scale * (x @ c.T)


def class_probabilities(image_emb: torch.Tensor, class_emb: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """(N, C) probabilities p(k | x) = softmax_k(s · cos(image, class_k))."""
    return class_logits(image_emb, class_emb, logit_scale).softmax(dim=-1)


def class_probabilities_numpy(image_emb: np.ndarray, class_emb: np.ndarray, logit_scale: float) -> np.ndarray:
    """:func:`class_probabilities` in NumPy float32, for the torch-free ONNX path."""
    x = image_emb / np.linalg.norm(image_emb, axis=1, keepdims=True)
    c = class_emb / np.linalg.norm(class_emb, axis=1, keepdims=True)
    logits = logit_scale * x @ c.T
    logits -= logits.max(axis=1, keepdims=True)  # softmax is shift-invariant; exp must not overflow
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def save_class_embeddings(
    path: Path, emb: torch.Tensor, classes: Sequence[str], **metadata: str
) -> torch.Tensor:
    """Write ``RUN/class_embeddings.safetensors`` atomically; ``metadata`` adds keys after ``classes``
    (the catlip objective records itself). Returns the (contiguous) tensor written."""
    from fungalzsl.tensorfile import save_tensors

    emb = emb.contiguous()
    save_tensors(path, {"embeddings": emb}, metadata={"classes": json.dumps(list(classes)), **metadata})
    return emb


def load_class_embeddings(path: Path, classes: Any) -> tuple[list[str], torch.Tensor] | None:
    """(class names, (C, D) embeddings) from a stored file, or None when there is none to use.

    ``classes`` is the run's ``config["classes"]`` (names, or records with a ``name``); the rows are in
    that order. A file whose single tensor has another name is read as well. The caller
    checks that the counts agree: evaluation then falls back to descriptions, prediction refuses."""
    path = Path(path)
    if not path.is_file():
        return None
    from fungalzsl.tensorfile import load_tensors

    tensors = load_tensors(path, "class embeddings")
    emb = tensors.get("embeddings")
    if emb is None and len(tensors) == 1:
        emb = next(iter(tensors.values()))
    if emb is None or not isinstance(classes, list):
        return None
    return [c if isinstance(c, str) else c["name"] for c in classes], emb
