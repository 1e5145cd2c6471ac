"""What a few-shot adapter fits on, computed the same way by ``fungalzsl adapt``, ``fungalzsl fewshot`` and
the :class:`~fungalzsl.predict.classifier.Classifier` (predict, serve) and ``evaluate``:

* ``features``: ``embedding``, the run's normalised image embedding (the space of its text classifier), or
  ``backbone``, the image tower's backbone features before the projection
  (:meth:`fungalzsl.models.base.TwoTowerModel.encode_image_with_backbone`), L2-normalised; a model
  object with only ``encode_image`` (the small protocol) has no separate backbone: its embedding is used;
  or ``both``, the two concatenated with equal weight, ``[e, b] / √2`` (``e``, ``b`` each normalised, so
  the result is a unit vector whose cosines are the mean of the two kinds' cosines; nothing is tuned);
* ``views``: 1, the centre crop ``predict`` sees, or 8, the normalised mean over its 8 flips / 90-degree
  rotations (the dihedral group D4; a micrograph has no "up"): 8 forward passes per image.

The zero-shot logits that go into an adapter (Tip-Adapter's text term) always come from the centre-crop
embedding, so the zero-shot label sets of the web page score as before."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

FEATURES = ("embedding", "backbone", "both")
VIEWS = (1, 8)


def check_features(features: str, views: int) -> None:
    """One-line errors for a feature kind or view count the adapters do not know."""
    from fungalzsl.errors import fail

    if features not in FEATURES:
        raise fail(f"unknown --features {features!r}", f"choose one of: {', '.join(FEATURES)}")
    if views not in VIEWS:
        raise fail(f"--views {views} is not supported", "use 1 (centre crop) or 8 (flips and rotations)")


def d4_views(x: torch.Tensor) -> torch.Tensor:
    """(8·B, C, H, W): the batch under rotations by 0/90/180/270 degrees, then the same mirrored; view-major
    (rows ``v·B .. v·B + B - 1`` are view ``v``; view 0 is ``x`` itself)."""
    return torch.cat([torch.rot90(v, k, (2, 3)) for v in (x, x.flip(3)) for k in range(4)])


@torch.no_grad()
def view_features(model: Any, x: torch.Tensor, views: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, V, D) normalised embeddings and (B, V, F) normalised backbone features of each of ``views``
    views of the batch ``x`` (V = ``views``; view 0 is the centre crop itself)."""
    b = x.shape[0]
    xs = d4_views(x) if views == 8 else x
    both = getattr(model, "encode_image_with_backbone", None)
    if both is not None:
        emb, backbone = both(xs)
    else:  # a model with only the small protocol (encode_image): its embedding stands for its backbone
        emb = model.encode_image(xs)
        backbone = emb

    def per_image(t: torch.Tensor) -> torch.Tensor:
        return F.normalize(t.float(), dim=-1).reshape(views, b, -1).transpose(0, 1)

    return per_image(emb), per_image(backbone)


def pick(emb: torch.Tensor, backbone: torch.Tensor, features: str, views: int) -> torch.Tensor:
    """(N, D) adapter inputs from :func:`view_features` output: the normalised mean of the first ``views``
    (``both``: the embedding's and the backbone's, concatenated and divided by √2)."""
    if features == "both":
        return (
            torch.cat([pick(emb, backbone, "embedding", views), pick(emb, backbone, "backbone", views)], 1)
            / 2**0.5
        )
    t = (emb if features == "embedding" else backbone)[:, :views]
    return t[:, 0] if views == 1 else F.normalize(t.mean(1), dim=-1)


@torch.no_grad()
def adapter_inputs(
    model: Any, x: torch.Tensor, features: str, views: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(centre-crop embedding (B, D), adapter inputs (B, F)) of a preprocessed batch ``x``."""
    if features == "embedding" and views == 1:
        emb = model.encode_image(x).float()
        return emb, F.normalize(emb, dim=-1)
    emb, backbone = view_features(model, x, views)
    return emb[:, 0], pick(emb, backbone, features, views)


@dataclass
class ViewEmbeddings:
    """Images embedded once for every feature / view choice: (N, V, D) and (N, V, F), normalised."""

    emb: torch.Tensor
    backbone: torch.Tensor

    def centre(self) -> torch.Tensor:
        """(N, D) the centre-crop embeddings: what the zero-shot classifier scores."""
        return self.emb[:, 0]

    def pick(self, features: str, views: int) -> torch.Tensor:
        return pick(self.emb, self.backbone, features, views)


@torch.no_grad()
def embed_paths(
    model: Any,
    paths: Sequence[Path],
    views: int,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> tuple[ViewEmbeddings, list[int], list[str]]:
    """Embed image files under ``views`` views: (embeddings of the readable ones, their indices, errors)."""
    from torch.utils.data import DataLoader

    from fungalzsl.predict.embed import ImagePaths, collate_images

    model.eval()
    device = next(model.parameters()).device
    loader = DataLoader(
        ImagePaths(list(paths), model.preprocess), batch_size=batch_size, collate_fn=collate_images
    )
    embs, backs, kept, errors = [], [], [], []
    for idx, xs, errs in loader:
        errors.extend(e for _, e in errs)
        if xs is not None:
            e, b = view_features(model, xs.to(device), views)
            embs.append(e.cpu())
            backs.append(b.cpu())
            kept.extend(idx)
        if progress:
            progress(len(idx) + len(errs))
    if not embs:
        return ViewEmbeddings(torch.empty(0, views, 0), torch.empty(0, views, 0)), kept, errors
    return ViewEmbeddings(torch.cat(embs), torch.cat(backs)), kept, errors
