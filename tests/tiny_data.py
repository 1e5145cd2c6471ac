"""Tiny on-disk data for the training and model tests: PIL-drawn coloured shapes in an ImageFolder tree,
and a description set. Each class has its own colour and shape so a few steps can learn it."""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

CLASSES = ("spore", "hyphae", "mycelium")
_COLOURS = {"spore": (250, 210, 0), "hyphae": (255, 120, 0), "mycelium": (200, 0, 0)}


def draw(cls: str, size: int, rng: random.Random) -> Image.Image:
    im = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(im)
    c = _COLOURS.get(cls, (0, 0, 200))
    for _ in range(rng.randint(3, 6)):
        x, y = rng.uniform(0.2, 0.8) * size, rng.uniform(0.2, 0.8) * size
        if cls == "spore":
            r = size * 0.06
            d.ellipse([x - r, y - r, x + r, y + r], fill=c)
        else:
            n = 3 if cls == "hyphae" else 9
            for _ in range(n):
                d.line([x, y, rng.uniform(0, size), rng.uniform(0, size)], fill=c, width=2)
    return im


def make_dataset(root: Path, per_class: dict[str, int] | None = None, size: int = 32, seed: int = 0) -> Path:
    """root/{train,val}/{class}/NNNNNN.png with ``per_class`` images per split."""
    rng = random.Random(seed)
    per_class = per_class or {"train": 8, "val": 4}
    for split, n in per_class.items():
        for cls in CLASSES:
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                draw(cls, size, rng).save(folder / f"{i:06d}.png")
    return root


def make_descriptions(path: Path, classes=CLASSES, per_class: int = 3) -> Path:
    words = {
        "spore": "small round yellow dots scattered",
        "hyphae": "orange thin branching threads",
        "mycelium": "dense deep red network of filaments",
    }
    lines = [
        json.dumps({"class": c, "text": f"{c} stage {i}: {words.get(c, c)}"})
        for c in classes
        for i in range(per_class)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


# The vocabulary of the tiny tokenizers built for transformers test models (CLIP, ALIGN, BLIP, SigLIP):
# the words of make_descriptions' texts, so the tiny text towers see real tokens.
TINY_WORDS = [
    "spore",
    "hyphae",
    "mycelium",
    "stage",
    "small",
    "round",
    "yellow",
    "dots",
    "scattered",
    "orange",
    "thin",
    "branching",
    "threads",
    "dense",
    "deep",
    "red",
    "network",
    "of",
    "filaments",
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    ":",
    ",",
]


def write_labelled(root: Path, items: list[tuple[str, str | None, Image.Image]]) -> Path:
    """A flat labelled folder as data/real-dev: root/NNN.png and root/labels.jsonl with ``file``,
    ``label`` and (when not None) ``source`` for each (label, source, image)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (label, source, im) in enumerate(items):
        name = f"{label}_{i:03d}.png"
        im.save(root / name)
        lines.append(json.dumps({"file": name, "label": label, **({"source": source} if source else {})}))
    (root / "labels.jsonl").write_text("\n".join(lines) + "\n")
    return root


def make_labelled(root: Path, per_source: dict[str, dict[str, int]], size: int = 32, seed: int = 0) -> Path:
    """A flat labelled folder of tiny shape images: ``per_source[source][class]`` images each."""
    rng = random.Random(seed)
    items = [
        (c, s, draw(c, size, rng))
        for s, counts in per_source.items()
        for c, n in counts.items()
        for _ in range(n)
    ]
    return write_labelled(root, items)
