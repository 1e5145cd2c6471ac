"""The one input path of both classifiers: expanding inputs, reading, batching, and failures as rows."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fungalzsl.predict.inputs import classify, gather_inputs

CLASSES = ["dark", "bright"]


def _brightness(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.float32).mean().reshape(1)


def _fake_probabilities(batches: list[int]):
    """Scores a batch of mean-brightness values; records each batch's size."""

    def score(xs: list[np.ndarray]) -> np.ndarray:
        batches.append(len(xs))
        b = np.concatenate(xs) / 255.0
        return np.stack([1 - b, b], axis=1)

    return score


def _images(tmp_path):
    d = tmp_path / "plate"
    d.mkdir()
    for i, v in enumerate((10, 240, 20, 230, 30)):
        Image.new("RGB", (8, 8), (v, v, v)).save(d / f"{i}.png")
    (d / "broken.png").write_bytes(b"not a png")
    return d


def test_inputs_keep_order_and_turn_every_failure_into_a_row(tmp_path):
    d = _images(tmp_path)
    pil = Image.new("L", (4, 4), 250)  # any mode: decoded to RGB like a file
    batches: list[int] = []
    results = classify(
        [d, str(tmp_path / "missing.png"), pil, str(d / "[34].png")],
        _brightness,
        _fake_probabilities(batches),
        CLASSES,
        batch_size=2,
    )
    names = [r.path.rsplit("/", 1)[-1] for r in results]
    assert names == ["0.png", "1.png", "2.png", "3.png", "4.png", "broken.png", "missing.png", "<image>",
                     "3.png", "4.png"]  # fmt: skip
    assert [r.prediction for r in results if r.ok] == ["dark", "bright", "dark", "bright", "dark", "bright",
                                                       "bright", "dark"]  # fmt: skip
    assert "not a readable image" in results[5].error and "no such file" in results[6].error
    assert batches == [2, 2, 2, 2]  # full batches of readable images, in order
    for r in results:
        assert r.probabilities == {} if r.error else sum(r.probabilities.values()) == pytest.approx(1.0)


def test_a_single_path_or_image_is_one_input_and_a_preprocess_failure_is_reported(tmp_path):
    d = _images(tmp_path)
    assert [i.name for i in gather_inputs(d / "0.png")] == [str(d / "0.png")]
    named = Image.open(d / "1.png")
    assert [i.name for i in gather_inputs(named)] == [str(d / "1.png")]  # a file's PIL image keeps its name

    def picky(im: Image.Image) -> np.ndarray:
        if _brightness(im)[0] > 128:
            raise ValueError("too bright")
        return _brightness(im)

    results = classify(str(d / "*.png"), picky, _fake_probabilities([]), CLASSES)
    by_name = {r.path.rsplit("/", 1)[-1]: r for r in results}
    assert (
        by_name["0.png"].ok and by_name["1.png"].error == f"{d / '1.png'}: could not preprocess (too bright)"
    )
    assert [r.ok for r in results].count(True) == 3


def test_a_pattern_or_folder_that_matches_nothing_is_a_row_not_an_exception(tmp_path):
    (tmp_path / "empty").mkdir()
    results = classify(
        [tmp_path / "empty", str(tmp_path / "*.tif")], _brightness, _fake_probabilities([]), CLASSES
    )
    assert [r.error for r in results] == [
        f"{tmp_path / 'empty'}: folder has no images",
        f"{tmp_path / '*.tif'}: pattern matched no files",
    ]
