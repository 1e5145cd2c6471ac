"""Embedding images from disk and texts with any registry model, in batches and without gradients.

Shared by training (validation), evaluation and prediction; an unreadable image is reported, not fatal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from fungalzsl.images import ImageReadError, load_image
from fungalzsl.progress import step


class ImagePaths(Dataset):
    """Images from disk through a transform; an unreadable file yields its error instead of a tensor."""

    def __init__(self, paths: Sequence[Path], transform: Callable[[Any], torch.Tensor]):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            return i, self.transform(load_image(self.paths[i])), None
        except ImageReadError as e:
            return i, None, str(e)


def collate_images(batch: list[tuple[int, torch.Tensor | None, str | None]]):
    ok = [(i, x) for i, x, _ in batch if x is not None]
    errors = [(i, e) for i, x, e in batch if x is None]
    idx = [i for i, _ in ok]
    xs = torch.stack([x for _, x in ok]) if ok else None
    return idx, xs, errors


@torch.no_grad()
def embed_images(
    model: Any,
    paths: Sequence[str | Path],
    batch_size: int = 64,
    num_workers: int = 0,
    progress: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, list[int], list[str]]:
    """Embed images from disk. Returns (embeddings of the readable ones, their indices, error lines).

    Unreadable files are reported, not fatal: the caller decides whether any result is enough."""
    model.eval()
    device = next(model.parameters()).device
    loader = DataLoader(
        ImagePaths([Path(p) for p in paths], model.preprocess),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_images,
    )
    feats: list[torch.Tensor] = []
    kept: list[int] = []
    errors: list[str] = []
    with step(f"embedding {len(paths)} images", len(paths)) as bar:
        for idx, xs, errs in loader:
            errors.extend(e for _, e in errs)
            if xs is not None:
                feats.append(model.encode_image(xs.to(device)).float().cpu())
                kept.extend(idx)
            bar.advance(len(idx) + len(errs))
            if progress:
                progress(len(idx) + len(errs))
    dim = feats[0].shape[1] if feats else 0
    return (torch.cat(feats) if feats else torch.empty(0, dim)), kept, errors


@torch.no_grad()
def embed_texts(model: Any, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """L2-normalised text embeddings, computed in batches without gradients."""
    model.eval()
    out = []
    with step(f"embedding {len(texts)} texts", len(texts)) as bar:
        for i in range(0, len(texts), batch_size):
            out.append(model.encode_text(list(texts[i : i + batch_size])).float().cpu())
            bar.advance(len(out[-1]))
    return F.normalize(torch.cat(out), dim=-1)
