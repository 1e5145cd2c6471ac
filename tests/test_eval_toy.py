"""A tiny two-tower test double with a known embedding space, plus end-to-end tests of evaluate on it.

KeywordModel: an image is embedded as its mean RGB colour; a text as the sum of the vectors of the
keywords it contains. With keyword vectors in RGB space, which image matches which text is known in
advance, so the evaluation pipeline's numbers can be checked exactly. Other eval tests import it."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fungalzsl.errors import FungalError

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


@pytest.fixture
def colour_data(tmp_path: Path) -> Path:
    return make_colour_dataset(tmp_path / "data")


@pytest.fixture
def good_set(tmp_path: Path) -> Path:
    return write_descriptions(tmp_path / "good.jsonl", GOOD, "good")


def test_keyword_model_space_is_as_designed():
    m = KeywordModel()
    t = m.encode_text(["a red thing", "nothing"])
    assert torch.allclose(t[0], torch.tensor([1.0, 0, 0]), atol=1e-4)
    x = torch.zeros(1, 3, 8, 8)
    x[:, 2] = 1.0
    assert m.encode_image(x).argmax().item() == 2


def test_evaluate_model_object_known_errors(colour_data, good_set, tmp_path):
    from fungalzsl.eval import evaluate_run

    out = tmp_path / "eval"
    m = evaluate_run(KeywordModel(), colour_data, out, descriptions=[good_set], n_boot=50, figures=False)
    # 18 images, the 2 reddish "blue" ones are predicted red: exactly 16/18 right.
    assert m["n"] == 18
    assert m["recall@1"] == pytest.approx(16 / 18)
    assert m["confusion_matrix"] == [[6, 0, 0], [0, 6, 0], [2, 0, 4]]
    assert m["per_class"]["blue"]["recall"] == pytest.approx(4 / 6)
    assert m["per_class"]["red"]["precision"] == pytest.approx(6 / 8)
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("recall@1", "per_class", "confusion_matrix", "ece", "n"):
        assert on_disk[key] == m[key]
    rows = (out / "predictions.csv").read_text().strip().splitlines()
    assert len(rows) == 19 and rows[0].startswith("path,true,prediction,correct,confidence,p_red")
    # retrieval over the 9 descriptions: every image's nearest description is its predicted colour.
    assert m["retrieval"]["image_to_text"]["R@1"] == pytest.approx(16 / 18)
    assert m["descriptions"]["name"] == "good"


def test_evaluate_skips_unreadable_images(colour_data, good_set, tmp_path):
    from fungalzsl.eval import evaluate_run

    (colour_data / "test" / "red" / "broken.png").write_bytes(b"not a png")
    m = evaluate_run(
        KeywordModel(), colour_data, tmp_path / "e", descriptions=[good_set], n_boot=20, figures=False
    )
    assert m["n"] == 18 and len(m["unreadable"]) == 1 and "broken.png" in m["unreadable"][0]


def test_evaluate_several_sets_headline_is_first(colour_data, good_set, tmp_path):
    from fungalzsl.eval import evaluate_run

    swapped = write_descriptions(
        tmp_path / "swapped.jsonl",
        {"red": GOOD["green"], "green": GOOD["red"], "blue": GOOD["blue"]},
        "swapped",
    )
    m = evaluate_run(
        KeywordModel(),
        colour_data,
        tmp_path / "e",
        descriptions=[good_set, swapped],
        n_boot=20,
        figures=False,
    )
    assert m["recall@1"] == pytest.approx(16 / 18)
    assert m["by_description_set"]["swapped"]["recall@1"] == pytest.approx(4 / 18)


def test_evaluate_run_accepts_a_comma_list_of_classifiers(colour_data, good_set, tmp_path):
    from fungalzsl.eval import evaluate_run

    m = evaluate_run(KeywordModel(), colour_data, tmp_path / "e", descriptions=[good_set], n_boot=10,
                     figures=False, classifier="max, template")  # fmt: skip
    assert m["classifier"] == "max" and list(m["by_classifier"]) == ["max", "template"]


def test_calibrate_on_val_lowers_ece_and_keeps_recall(tmp_path, good_set):
    from fungalzsl.eval import evaluate_run

    data = make_colour_dataset(tmp_path / "d", n=6, wrong_blue=2)
    make_colour_dataset(tmp_path / "d", n=6, wrong_blue=2, split="val")
    overconfident = KeywordModel(logit_scale=math.log(100.0))
    plain = evaluate_run(
        overconfident, data, tmp_path / "a", descriptions=[good_set], n_boot=10, figures=False
    )
    cal = evaluate_run(overconfident, data, tmp_path / "b", descriptions=[good_set], n_boot=10, figures=False,
                       calibrate_on="val")  # fmt: skip
    assert cal["recall@1"] == plain["recall@1"]
    assert cal["calibration"]["split"] == "val" and cal["calibration"]["n"] == 18
    assert cal["calibration"]["logit_scale"] < 100.0 == cal["calibration"]["logit_scale_before"]
    assert cal["nll"] < plain["nll"] / 2 and cal["ece"] <= plain["ece"]
    with pytest.raises(FungalError, match="is the split being evaluated"):
        evaluate_run(overconfident, data, tmp_path / "c", descriptions=[good_set], calibrate_on="test")
