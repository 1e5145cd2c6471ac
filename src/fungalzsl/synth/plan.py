"""Which image goes where: class, split and file name of every index, decided before any drawing.

The plan depends only on the preset, the image count and the seed, so every worker, every
``--shard i/n`` part and every ``--resume`` agrees on it without talking to each other. Each image's
randomness is ``numpy.random.default_rng(SeedSequence([seed, index]))`` (:mod:`fungalzsl.synth.rng`):
the same image comes out whatever the number of workers or parts."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fungalzsl.errors import fail
from fungalzsl.synth.preset import GeneratorPreset
from fungalzsl.synth.sequence import frame_labels


@dataclass(frozen=True)
class Job:
    """One image to make."""

    index: int
    split: str
    label: str
    label_id: int
    sequence_id: int = -1
    frame: int = -1

    @property
    def file_name(self) -> str:
        return f"{self.split}/{self.label}/{self.index:06d}.png"

    @property
    def key(self) -> str:
        return f"{self.index:06d}"

    def to_dict(self) -> dict:
        return asdict(self)


# Which sampling and drawing code made the pixels. The same preset and seed give byte-identical images
# only under one value: bump it whenever a change alters them, so that --resume and --shard refuse to
# mix images from two versions. 1: float64 sampler, RGBA canvas; 2: float32 sampler, BGRA canvas.
IMAGE_ALGORITHM = 2


def split_counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Integer counts summing to ``n``, as close to ``n·fraction`` as possible (largest remainder)."""
    names = list(fractions)
    raw = np.array([fractions[s] * n for s in names])
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return {s: int(c) for s, c in zip(names, counts)}


def plan_classes(preset: GeneratorPreset, num_images: int) -> list[Job]:
    """Balanced classes, interleaved by index (any prefix stays balanced), stratified splits."""
    names = preset.class_names
    C = len(names)
    per_class = [num_images // C + (1 if c < num_images % C else 0) for c in range(C)]
    split_of_rank: list[list[str]] = []
    for c in range(C):
        counts = split_counts(per_class[c], preset.splits)
        split_of_rank.append([s for s, k in counts.items() for _ in range(k)])
    jobs = []
    for i in range(num_images):
        c, rank = i % C, i // C
        jobs.append(Job(index=i, split=split_of_rank[c][rank], label=names[c], label_id=c))
    return jobs


def plan_sequences(preset: GeneratorPreset, num_images: int, seed: int) -> list[Job]:
    """Whole sequences of ``frames`` images, each sequence in one split (no leakage between splits);
    a frame's label is the stage most of its cells are in."""
    frames = preset.sequence.frames
    if num_images < frames:
        raise fail(
            f"--num-images {num_images} is less than one sequence ({frames} frames)",
            "raise --num-images or lower sequence.frames in the preset",
        )
    n_seq = num_images // frames
    counts = split_counts(n_seq, preset.splits)
    split_of_seq = [s for s, k in counts.items() for _ in range(k)]
    jobs = []
    for q in range(n_seq):
        labels = frame_labels(preset, seed, q)
        for f in range(frames):
            c = labels[f]
            jobs.append(
                Job(
                    index=q * frames + f,
                    split=split_of_seq[q],
                    label=preset.class_names[c],
                    label_id=c,
                    sequence_id=q,
                    frame=f,
                )
            )
    return jobs


def parse_shard(text: str | None) -> tuple[int, int]:
    """'I/N' → (I, N) with 0 <= I < N; None → (0, 1)."""
    if text is None:
        return (0, 1)
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise fail(
            f"--shard {text!r} is not I/N", "write e.g. --shard 0/4 for the first of four parts"
        ) from None
    if n < 1 or not 0 <= i < n:
        raise fail(f"--shard {text}: need 0 <= I < N", "parts are numbered 0 to N-1") from None
    return (i, n)
