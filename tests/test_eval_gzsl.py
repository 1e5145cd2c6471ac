"""Calibrated stacking (``--stack-budget``, fungalzsl.eval.gzsl): the seen-class-budget shift exactly on
tiny tensors, the shifted logits, one-line errors, and end to end on a run whose untrained class is
found only after the shift."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fungalzsl.errors import FungalError
from fungalzsl.eval.gzsl import StackedClassifier, budget_gamma, check_budget, seen_mask, stack

MASK = torch.tensor([True, True, False])  # classes 0, 1 seen; 2 unseen


def _scores(margins: list[float], wrong: int = 0) -> tuple[torch.Tensor, list[int]]:
    """Images of seen class 0 whose score beats the unseen class by ``margins``; ``wrong`` more that
    class 1 takes (they must not count)."""
    rows = [[1.0, 0.0, 1.0 - m] for m in margins] + [[0.2, 0.9, 0.1]] * wrong
    return torch.tensor(rows, dtype=torch.float64), [0] * (len(margins) + wrong)


@pytest.mark.parametrize(
    ("margins", "budget", "gamma"),
    [
        ([0.1, 0.2, 0.3, 0.4], 0.0, 0.05),  # k = 0: half the smallest margin, nothing lost
        ([0.1, 0.2, 0.3, 0.4], 0.25, 0.15),  # k = 1: between the 1st and 2nd
        ([0.4, 0.1, 0.3, 0.2], 0.5, 0.25),  # order of the images does not matter
        ([0.1, 0.2, 0.3, 0.4], 0.74, 0.25),  # floor(0.74 * 4) = 2
        ([0.1, 0.1, 0.3, 0.4], 0.25, 0.05),  # tied margins: both kept rather than both lost
        ([0.0, 0.2], 0.0, 0.0),  # a tie with the unseen class at gamma 0: no room to shift
    ],
)
def test_budget_gamma_is_exact(margins, budget, gamma):
    scores, labels = _scores(margins, wrong=2)
    assert budget_gamma(scores, labels, MASK, budget) == pytest.approx(gamma, abs=1e-9)


def test_at_most_the_budget_of_right_images_is_lost():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(40, 3, generator=g)
    labels = torch.randint(0, 2, (40,), generator=g).tolist()
    y = torch.tensor(labels)
    right0 = scores.argmax(1) == y
    for budget in (0.0, 0.05, 0.2, 0.5):
        gamma = budget_gamma(scores, labels, MASK, budget)
        shifted = scores - gamma * MASK.float()
        lost = int((right0 & (shifted.argmax(1) != y)).sum())
        assert lost <= math.floor(budget * int(right0.sum()))
        # and the next larger shift would lose one more: gamma is the largest such shift (up to the midpoint)
        margins = scores[right0].gather(1, y[right0, None]).squeeze(1) - scores[right0][:, 2]
        assert int((margins <= gamma).sum()) == lost


def test_no_right_image_means_no_shift():
    assert budget_gamma(torch.tensor([[0.0, 1.0, 0.5]]), [0], MASK, 0.05) == 0.0


class _Base:
    def __init__(self) -> None:
        self.classes, self.method, self.logit_scale = ["a", "b", "new"], "mean", 10.0

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * x


def test_stacked_logits_lower_only_the_seen_classes():
    clf = StackedClassifier(_Base(), MASK, 0.25)
    x = torch.tensor([[0.9, 0.1, 0.7]])
    assert torch.allclose(clf.logits(x), torch.tensor([[6.5, -1.5, 7.0]]))
    assert clf.probabilities(x).argmax().item() == 2 and clf.method == "mean+stacking"
    assert torch.allclose(clf.probabilities(x).sum(), torch.tensor(1.0))


def test_stack_fits_in_unscaled_units():
    base = _Base()
    val = torch.tensor([[1.0, 0.0, 0.9], [1.0, 0.0, 0.6]])  # margins 0.1 and 0.4 in cosine units
    clf, info = stack(base, val, [0, 0], MASK, 0.5)
    assert clf.gamma == info["gamma"]
    assert info["gamma"] == pytest.approx(0.25) and info["seen"] == ["a", "b"] and info["n_val"] == 2
    base.logit_scale = 100.0  # a sharper temperature does not change gamma
    assert stack(base, val, [0, 0], MASK, 0.5)[1]["gamma"] == pytest.approx(0.25)


@pytest.mark.parametrize("budget", [1.0, -0.1, float("nan"), 2])
def test_bad_budget_is_a_one_line_error(budget):
    with pytest.raises(FungalError, match="must be in \\[0, 1\\)"):
        check_budget(budget)


def test_masks_need_a_seen_and_an_unseen_class():
    assert seen_mask(["a", "b", "c"], ["b"]).tolist() == [False, True, False]
    with pytest.raises(FungalError, match="needs a class the run was not trained on"):
        seen_mask(["a", "b"], ["a", "b", "c"])
    with pytest.raises(FungalError, match="none of the evaluated classes was trained on"):
        seen_mask(["x"], ["a"])
    with pytest.raises(FungalError, match="is of an unseen class"):
        budget_gamma(torch.zeros(1, 3), [2], MASK, 0.1)
    with pytest.raises(FungalError, match="do not match"):
        budget_gamma(torch.zeros(2, 3), [0], MASK, 0.1)


# --- end to end: a "run" over red and green, a blue class known only from a reddish description ---


def _model():
    from keyword_model import KeywordModel

    # green's description leans blue ("sea"), blue's own leans red ("dusk"): blue images go to green
    # until the seen classes are lowered; red images are the seen ones closest to the new class.
    return KeywordModel({"red": (1, 0, 0), "green": (0, 1, 0), "sea": (0, 0, 0.9), "dusk": (0.8, 0, 0.6)})


@pytest.fixture
def colour_run(tmp_path, monkeypatch) -> tuple[Path, Path, Path]:
    from keyword_model import make_colour_dataset, write_descriptions

    data = make_colour_dataset(tmp_path / "data", n=3, wrong_blue=0)
    make_colour_dataset(data, n=3, wrong_blue=0, split="val")
    train = make_colour_dataset(tmp_path / "train", n=3, wrong_blue=0, split="val")
    shutil.rmtree(train / "val" / "blue")
    (train / "dataset.json").write_text(json.dumps({"classes": ["red", "green"]}))
    desc = write_descriptions(
        tmp_path / "d.jsonl", {"red": ["red"], "green": ["green sea"], "blue": ["dusk"]}
    )
    run = tmp_path / "run"
    run.mkdir()
    config = {"classes": ["red", "green"], "data": str(train), "descriptions": {"path": str(desc)}}
    (run / "config.json").write_text(json.dumps(config))
    model = _model()
    monkeypatch.setattr("fungalzsl.models.load_run", lambda path: (model, config))
    return run, data, desc


def test_stacking_finds_the_untrained_class_end_to_end(colour_run, tmp_path):
    from fungalzsl.eval import evaluate_run

    run, data, desc = colour_run
    kw = dict(descriptions=[desc], baseline=False, record=False, n_boot=20, figures=False)
    plain = evaluate_run(run, data, tmp_path / "plain", "test", **kw)
    assert plain["per_class"]["blue"]["recall"] == 0.0 and "stacking" not in plain
    m = evaluate_run(run, data, tmp_path / "st", "test", stack_budget=0.5, **kw)
    st = m["stacking"]
    assert st["n_val"] == 6 and st["seen"] == ["red", "green"] and st["budget"] == 0.5
    # budget 0.5 of 6 right val images: the 3 red ones (smallest margins) may go, the green ones stay
    assert m["per_class"]["blue"]["recall"] == 1.0
    assert m["per_class"]["green"]["recall"] == 1.0 and m["per_class"]["red"]["recall"] == 0.0
    assert m["classifier"] == "mean+stacking"
    zero = evaluate_run(run, data, tmp_path / "z", "test", stack_budget=0.0, **kw)
    assert 0 < zero["stacking"]["gamma"] < st["gamma"]
    assert zero["per_class"]["red"]["recall"] == 1.0 and zero["per_class"]["green"]["recall"] == 1.0


def test_stacking_errors_are_one_line_on_the_command_line(colour_run, tmp_path):
    from fungalzsl.cli import app

    run, data, desc = colour_run
    base = ["evaluate", str(run), "--data", str(data), "--descriptions", str(desc), "--no-baseline"]
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "o1"), "--stack-budget", "1.5"])
    assert r.exit_code != 0 and "--stack-budget 1.5: must be in [0, 1)" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "o1").exists()
    shutil.rmtree(Path(json.loads((run / "config.json").read_text())["data"]) / "val")
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "o2"), "--stack-budget", "0.05"])
    assert r.exit_code != 0 and "has no val split on disk" in r.output and "Traceback" not in r.output
