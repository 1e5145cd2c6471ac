"""No silent minutes: every step that can take long says so on stderr (fungalzsl.progress), here with
the delay before a step speaks set to zero so tiny data shows it too."""

from __future__ import annotations

from pathlib import Path

import pytest

import fungalzsl.progress
from keyword_model import GOOD, KeywordModel, make_colour_dataset, write_descriptions


@pytest.fixture
def loud(monkeypatch):
    monkeypatch.setattr(fungalzsl.progress, "DELAY", 0.0)


def test_a_quick_step_stays_silent_and_a_slow_one_speaks(capsys, monkeypatch) -> None:
    with fungalzsl.progress.step("quick", 3) as s:
        s.advance(3)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(fungalzsl.progress, "DELAY", 0.0)
    with fungalzsl.progress.step("slow thing", 3) as s:
        s.advance(3)
    err = capsys.readouterr().err
    assert "slow thing… 0/3" in err and "slow thing: done in" in err


def test_training_says_model_start_up_and_cache_filling(loud, capsys, tmp_path: Path) -> None:
    from fungalzsl.train.loop import train_run
    from tiny_data import make_dataset, make_descriptions

    data = make_dataset(tmp_path / "data", {"train": 2, "val": 1})
    cfg = {"epochs": 1, "batch_size": 6, "unfreeze_max": {"image": 1, "text": 0}, "image_size": 32,
           "embed_dim": 8, "progress": False, "device": "cpu"}  # fmt: skip
    train_run(data, make_descriptions(tmp_path / "d.jsonl"), tmp_path / "run", "lite", cfg)
    err = capsys.readouterr().err
    assert "starting model lite" in err
    assert "caching frozen image features of 6 images" in err  # the training split
    assert "caching frozen image features of 3 images" in err  # the val split
    assert "caching frozen text features of 9 descriptions" in err


def test_evaluate_and_compare_say_what_they_embed(loud, capsys, tmp_path: Path) -> None:
    from fungalzsl.eval import evaluate_run
    from fungalzsl.eval.compare import compare_sets

    data = make_colour_dataset(tmp_path / "data")
    good = write_descriptions(tmp_path / "good.jsonl", GOOD, "good")
    evaluate_run(KeywordModel(), data, tmp_path / "eval", descriptions=[good], n_boot=10, figures=False)
    err = capsys.readouterr().err
    n = len(list((tmp_path / "data" / "test").rglob("*.png")))
    assert f"embedding {n} images" in err and "embedding 3 texts" in err and "embedding 9 texts" in err
    compare_sets(KeywordModel(), data, [good], tmp_path / "cmp", n_boot=10, figures=False)
    err = capsys.readouterr().err
    assert f"embedding {n} images" in err and "embedding 3 texts" in err and "embedding 9 texts" in err


def test_a_new_label_set_for_predict_and_serve_says_it_embeds_descriptions(loud, capsys, tmp_path) -> None:
    from fungalzsl.predict.classifier import label_set  # behind predict --classes and serve --descriptions

    names, _ = label_set(KeywordModel(), write_descriptions(tmp_path / "g.jsonl", GOOD, "good"))
    err = capsys.readouterr().err
    assert err.count("embedding 3 texts…") == len(names) == 3


def test_a_slow_start_up_is_announced_by_its_timer(capsys, monkeypatch) -> None:
    import time

    monkeypatch.setattr(fungalzsl.progress, "DELAY", 0.05)
    with fungalzsl.progress.step("starting model quick", now=True):
        pass
    assert capsys.readouterr().err == ""
    with fungalzsl.progress.step("starting model slow", now=True):
        time.sleep(0.3)
    err = capsys.readouterr().err
    assert "starting model slow…" in err and "starting model slow: done in" in err
