"""KeywordModel, a tiny two-tower test double with a known embedding space, and its colour dataset.

An image is embedded as its mean RGB colour; a text as the sum of the vectors of the keywords it
contains. With keyword vectors in RGB space, which image matches which text is known in advance, so
evaluation, prediction and report numbers can be checked exactly."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}


class KeywordModel(torch.nn.Module):
    """Implements the model interface of docs/architecture.md with a hand-made embedding space."""

    def __init__(
        self, vectors: dict[str, Sequence[float]] | None = None, logit_scale: float = math.log(20.0)
    ):
        super().__init__()
        vectors = vectors or COLOURS
        self.vectors = {k: torch.tensor(v, dtype=torch.float32) for k, v in vectors.items()}
        self.dim = len(next(iter(self.vectors.values())))
        self.logit_scale = torch.nn.Parameter(torch.tensor(float(logit_scale)))
        self.texts_seen: list[str] = []

    def preprocess(self, im: Image.Image) -> torch.Tensor:
        a = np.asarray(im.convert("RGB").resize((8, 8)), dtype=np.float32) / 255.0
        return torch.from_numpy(a).permute(2, 0, 1)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        v = x.float().mean(dim=(2, 3))
        if v.shape[1] < self.dim:
            v = F.pad(v, (0, self.dim - v.shape[1]))
        return F.normalize(v[:, : self.dim] + 1e-6, dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        self.texts_seen.extend(texts)
        rows = []
        for t in texts:
            v = torch.full((self.dim,), 1e-6)
            for tok in re.findall(r"[a-z_]+", t.lower()):
                if tok in self.vectors:
                    v = v + self.vectors[tok]
            rows.append(v)
        return F.normalize(torch.stack(rows), dim=-1)

    def layer_groups(self) -> dict[str, list[torch.nn.Module]]:
        return {"image": [], "text": []}


# Per class: (pixel colour, count). The last two blue images are painted reddish: known errors.
def make_colour_dataset(root: Path, n: int = 6, wrong_blue: int = 2, split: str = "test") -> Path:
    rng = np.random.default_rng(0)
    paint = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
    for cls, rgb in paint.items():
        d = root / split / cls
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            colour = (200, 30, 150) if cls == "blue" and i >= n - wrong_blue else rgb
            a = np.clip(np.array(colour)[None, None, :] + rng.integers(-10, 10, (16, 16, 3)), 0, 255)
            Image.fromarray(a.astype(np.uint8)).save(d / f"{i:06d}.png")
    (root / "dataset.json").write_text(json.dumps({"classes": list(paint)}))
    return root


def write_descriptions(path: Path, by_class: dict[str, list[str]], name: str | None = None) -> Path:
    with open(path, "w") as f:
        for c, texts in by_class.items():
            for t in texts:
                f.write(json.dumps({"class": c, "text": t, **({"set": name} if name else {})}) + "\n")
    return path


GOOD = {c: [f"a {c} fungus", f"bright {c} colour", f"{c} cells"] for c in COLOURS}
