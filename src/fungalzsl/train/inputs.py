"""Training inputs: the checked splits and descriptions, image–description pairs drawn per epoch, and
the frozen-prefix feature cache.

While the bottom of a tower is frozen and inputs are deterministic (the eval transform, no random
augmentation), its output for a given image never changes within an unfreeze stage. The cache
computes it once — at the deepest split the whole run will need (the *base*) — and derives each
stage's split from the base by running only the frozen groups in between, so images are decoded once.

With training augmentation (train/augment.py) the input is random, so the cache holds ``views``
augmented views of every image instead of one (row ``v·N + i`` is view v of image i) and each epoch
picks one view per image: the frozen prefix still runs once per view, not once per epoch."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from fungalzsl.errors import fail
from fungalzsl.images import ImageReadError, ImageSet, list_split, load_image
from fungalzsl.predict.embed import ImagePaths, collate_images
from fungalzsl.progress import step
from fungalzsl.text.records import DescriptionSet, load_description_set


@dataclass
class TrainInputs:
    """What a run learns from: the splits, their classes, and the description set laid out flat."""

    data: Path  # the dataset directory, with train/ and maybe val/
    descriptions: Path  # the description set's file
    train_set: ImageSet
    val_set: ImageSet | None
    desc: DescriptionSet
    texts: list[str]  # every description, class by class in ``classes`` order
    text_ranges: list[tuple[int, int]]  # class k's descriptions are texts[lo:hi]
    train_labels: torch.Tensor  # (N,) class index of every training image
    # With train.captions: grounded, the captions follow the descriptions in ``texts`` (each distinct
    # string once, from ``n_descriptions`` on) and row i lists image i's caption indices, -1 padded.
    caption_ids: torch.Tensor | None = None  # (N, K) long
    n_descriptions: int = 0
    caption_share: float = 0.0

    @property
    def classes(self) -> list[str]:
        return self.train_set.classes


def read_inputs(
    data: str | Path, descriptions: str | Path, captions: str = "none", caption_share: float = 0.5
) -> TrainInputs:
    """Read and check the dataset and the description set: every class of the data needs
    descriptions, and the set may name no class the data lacks (one-line errors). ``captions``
    ``grounded`` adds every training image's grounded captions (:func:`add_captions`)."""
    train_set = list_split(data, "train")
    classes = train_set.classes
    val_set = list_split(data, "val", classes=classes) if (Path(data) / "val").is_dir() else None
    desc = load_description_set(descriptions)
    desc.require_classes(classes)
    unknown = [c for c in desc.classes if c not in classes]
    if unknown:
        raise fail(
            f"description set {descriptions} names class(es) not in the data: {', '.join(unknown)}",
            f"the data's classes are {', '.join(classes)}; fix the set or the data",
        )
    texts = [t for c in classes for t in desc.by_class[c]]
    text_ranges, start = [], 0
    for c in classes:
        text_ranges.append((start, start + len(desc.by_class[c])))
        start += len(desc.by_class[c])
    inputs = TrainInputs(
        Path(data), Path(descriptions), train_set, val_set, desc, texts, text_ranges,
        torch.tensor(train_set.labels), n_descriptions=len(texts),
    )  # fmt: skip
    if captions == "grounded":
        add_captions(inputs, caption_share)
    return inputs


def add_captions(inputs: TrainInputs, share: float) -> None:
    """Append the training images' grounded captions (``DATA/captions.jsonl``) to ``inputs.texts``."""
    from fungalzsl.captionsfile import read_captions

    by_file = read_captions(inputs.data)
    if not by_file:
        raise fail(
            f"train.captions is grounded but {inputs.data} has no captions.jsonl",
            f"write it with: fungalzsl generate captions {inputs.data} (or generate with --captions)",
        )
    index: dict[str, int] = {}
    rows: list[list[int]] = []
    for path in inputs.train_set.paths:
        rel = "/".join(Path(path).parts[-3:])  # SPLIT/CLASS/FILE, as captions.jsonl names it
        caps = by_file.get(rel)
        if not caps:
            raise fail(
                f"{path} has no grounded captions in captions.jsonl",
                "captions come from the generator's scenes: regenerate them with fungalzsl generate captions DIR",
            )
        rows.append([index.setdefault(c, inputs.n_descriptions + len(index)) for c in caps])
    inputs.texts.extend(index)
    width = max(len(r) for r in rows)
    inputs.caption_ids = torch.tensor([r + [-1] * (width - len(r)) for r in rows], dtype=torch.long)
    inputs.caption_share = share


def caption_positives(
    inputs: TrainInputs, image_idx: torch.Tensor, text_idx: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """(N, N) bool positives of a batch with captions: text r is a positive of image q when it is a
    description of q's class, or one of q's own captions (the same string captioning q counts too)."""
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1:
        raise fail("train.captions: grounded trains on one process", "run without torchrun / DDP")
    assert inputs.caption_ids is not None
    caps = inputs.caption_ids.to(text_idx.device)[image_idx]  # (N, K)
    own = (caps[:, :, None] == text_idx[None, None, :]).any(dim=1)
    is_desc = (text_idx < inputs.n_descriptions)[None, :]
    return own | (is_desc & (labels[:, None] == labels[None, :]))


def draw_pairs(
    inputs: TrainInputs, keep: torch.Tensor, batch_size: int, seed: int, epoch: int, rank: int, world: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's (image indices, description indices) for every batch of one epoch.

    The readable images ``keep`` are shuffled and each gets a description drawn uniformly from its
    class, ``lo + ⌊u·(hi − lo)⌋`` with u ~ U[0, 1) (with grounded captions, one of its own captions
    instead with probability ``caption_share``), all from a generator seeded by (seed, epoch) alone,
    so every rank draws the same global batches; rank r takes every world-th pair of each. A last
    batch of one pair is dropped: it has no negatives."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = keep[torch.randperm(len(keep), generator=gen)]
    classes = inputs.train_labels[order].tolist()
    lo = torch.tensor([inputs.text_ranges[y][0] for y in classes])
    hi = torch.tensor([inputs.text_ranges[y][1] for y in classes])
    pick = lo + (torch.rand(len(order), generator=gen) * (hi - lo)).long()
    if inputs.caption_ids is not None:  # drawn after the descriptions: runs without captions unchanged
        use = torch.rand(len(order), generator=gen) < inputs.caption_share
        caps = inputs.caption_ids[order]
        count = (caps >= 0).sum(1)
        which = (torch.rand(len(order), generator=gen) * count).long()
        pick = torch.where(use, caps[torch.arange(len(order)), which], pick)
    batches = [slice(i, i + batch_size) for i in range(0, len(order), batch_size)]
    batches = [b for b in batches if len(order[b]) >= 2]
    return [(order[b][rank::world], pick[b][rank::world]) for b in batches]


def iter_images(
    paths: Sequence[Path],
    batches: Sequence[Sequence[int]],
    transform: Callable[[Any], torch.Tensor],
    num_workers: int = 0,
    bad: list[str] | None = None,
    dataset: Dataset | None = None,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Yield (indices, pixel batch) per batch of indices; unreadable files go to ``bad`` and are skipped.
    ``dataset`` (default: ``paths`` through ``transform``) may index augmented views instead."""
    loader = DataLoader(
        dataset if dataset is not None else ImagePaths(paths, transform),
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=collate_images,
    )
    for idx, xs, errors in loader:
        if bad is not None:
            bad.extend(e for _, e in errors)
        if xs is not None:
            yield idx, xs


class FeatureCache:
    """Frozen-prefix outputs of the image tower for a fixed list of images (train or val split); with
    ``augment`` (an AugmentedImages over the same paths), of each of its views: ``views`` rows per image."""

    def __init__(
        self, model: Any, paths: Sequence[Path], base: int, batch_size: int, num_workers: int, device,
        augment: Dataset | None = None,
    ):  # fmt: skip
        self.model, self.paths, self.base = model, list(paths), base
        self.batch_size, self.num_workers, self.device = batch_size, num_workers, device
        self.augment = augment
        self.views: int = getattr(augment, "views", 1) if augment is not None else 1
        self.errors: list[str] = []  # "path: reason" for files that could not be read
        self.base_feats: torch.Tensor | None = None
        self.valid: torch.Tensor | None = None  # bool mask of readable images
        self.split, self.feats = 0, None

    def _from_disk(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode and run every image once. Under DDP each rank does every world-th image and the
        results are summed across ranks (each slot is filled by exactly one rank)."""
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        feats: torch.Tensor | None = None
        rows = len(self.paths) * self.views
        valid = torch.zeros(rows, dtype=torch.bool)
        errs: list[str] = []
        with torch.no_grad():
            mine, bs = list(range(rank, rows, world)), self.batch_size
            batches = [mine[i : i + bs] for i in range(0, len(mine), bs)]
            images = iter_images(
                self.paths, batches, self.model.preprocess, self.num_workers, errs, self.augment
            )
            with step(f"caching frozen image features of {len(mine)} images", len(mine)) as bar:
                for idx, xs in images:
                    h = self.model.image_trunk(xs.to(self.device), n).float().cpu()
                    if feats is None:
                        feats = torch.zeros((rows, *h.shape[1:]))
                    feats[idx] = h
                    valid[idx] = True
                    bar.advance(len(idx))
        if world > 1:
            feats, valid, errs = _sum_across_ranks(feats, valid, errs, self.device)
        self.errors.extend(dict.fromkeys(errs))  # an unreadable file fails once per view
        if feats is None:
            feats = torch.zeros(rows, 0)
        return feats, valid.view(self.views, len(self.paths)).all(0)

    def scan(self) -> torch.Tensor:
        """Decode every image once (filling the base cache if there is one); returns the readable mask."""
        if self.valid is None:
            if self.base > 0:
                self.base_feats, self.valid = self._from_disk(self.base)
            else:
                # No cache to fill: still find unreadable files up front, so every epoch sees the same set.
                valid = torch.zeros(len(self.paths), dtype=torch.bool)
                for i, p in enumerate(self.paths):
                    try:
                        load_image(p)
                        valid[i] = True
                    except ImageReadError as e:
                        self.errors.append(str(e))
                self.valid = valid
        return self.valid

    def at(self, split: int) -> torch.Tensor | None:
        """Features after the bottom ``split`` groups, or None when the stage trains from pixels."""
        if split == 0:
            self.split, self.feats = 0, None
            return None
        if split == self.split and self.feats is not None:
            return self.feats
        self.scan()
        if self.base_feats is not None and split >= self.base:
            out = []
            with torch.no_grad():
                for i in range(0, len(self.base_feats), self.batch_size):
                    h = self.base_feats[i : i + self.batch_size].to(self.device)
                    out.append(self.model.image_trunk(h, split, start=self.base).float().cpu())
            feats = torch.cat(out)
        else:
            feats, _ = self._from_disk(split)
            self.errors = list(dict.fromkeys(self.errors))  # a second pass reports the same files
        self.split, self.feats = split, feats
        return feats


def _sum_across_ranks(
    feats: torch.Tensor | None, valid: torch.Tensor, errs: list[str], device: Any
) -> tuple[torch.Tensor | None, torch.Tensor, list[str]]:
    """Assemble a rank-sharded cache on every rank (NCCL needs the tensors on the GPU)."""
    shapes: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(shapes, None if feats is None else tuple(feats.shape))
    all_errs: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(all_errs, errs)
    shape = next((s for s in shapes if s is not None), None)
    if shape is None:
        return None, valid, [e for es in all_errs for e in es]
    comm = torch.device(device) if dist.get_backend() == "nccl" else torch.device("cpu")
    out = (feats if feats is not None else torch.zeros(shape)).to(comm)
    mask = valid.to(comm, torch.int32)
    dist.all_reduce(out)
    dist.all_reduce(mask)
    return out.cpu(), mask.cpu().bool(), [e for es in all_errs for e in es]
