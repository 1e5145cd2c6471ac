"""End-to-end tests of ``evaluate_run`` on KeywordModel (tests/keyword_model.py), whose numbers are known."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from fungalzsl.errors import FungalError
from keyword_model import GOOD, KeywordModel, make_colour_dataset, write_descriptions


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
