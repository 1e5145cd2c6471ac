"""``fungalzsl baseline``: the classifiers that need no fine-tuning, as run directories.

Most tests build the baselines from the KeywordModel test double (registered as the spec ``toy``), whose
image embedding is the normalised mean colour, so prototypes and predictions are known exactly; one
slow test builds ``lite`` for real and checks that its run rebuilds the very same weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import fungalzsl.models.registry as registry
from fungalzsl import Classifier
from fungalzsl.cli import app
from fungalzsl.errors import FungalError
from fungalzsl.fewshot.baseline import build_baseline, draw_support
from fungalzsl.images import ImageSet
from keyword_model import COLOURS, GOOD, KeywordModel, make_colour_dataset, write_descriptions

CLASSES = list(COLOURS)  # red, green, blue


@pytest.fixture
def toy(monkeypatch):
    real = registry.build_model

    def build_model(spec, pretrained=True, **options):
        if spec == "toy-random":  # text vectors drawn at random, as lite draws its projection heads
            return KeywordModel(
                {c: (torch.tensor(v) + 0.5 * torch.randn(3)).tolist() for c, v in COLOURS.items()}
            )
        return KeywordModel() if spec == "toy" else real(spec, pretrained, **options)

    monkeypatch.setattr(registry, "build_model", build_model)


@pytest.fixture
def data(tmp_path):
    root = make_colour_dataset(tmp_path / "data", n=6, wrong_blue=0, split="train")
    return make_colour_dataset(root, n=6, wrong_blue=2, split="test")  # 2 reddish blues: known errors


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _ok(*args):
    res = _invoke(*args)
    assert res.exit_code == 0, res.output
    return res


def _one_line_error(match, *args):
    res = _invoke(*args)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.exit_code == 2 and len(errors) == 1 and match in errors[0], res.output
    assert "Traceback" not in res.output
    return errors[0]


def _mean_colour(path: Path) -> np.ndarray:
    """KeywordModel's image embedding, computed here independently: the normalised mean RGB at 8x8."""
    v = (np.asarray(Image.open(path).convert("RGB").resize((8, 8)), dtype=np.float64) / 255).mean((0, 1))
    return v / np.linalg.norm(v)


def test_support_is_bounded_seeded_and_drawn_per_class():
    labels = [0] * 10 + [1] * 3 + [2] * 7
    images = ImageSet([Path(f"{i:02d}.png") for i in range(20)], labels, ["a", "b", "c"])
    got = draw_support(images, 4, seed=0)
    assert [i.label for i in got] == ["a"] * 4 + ["b"] * 3 + ["c"] * 4  # bounded; a small class gives all
    assert got == draw_support(images, 4, seed=0) and got != draw_support(images, 4, seed=1)
    assert all(images.labels[int(i.path.stem)] == "abc".index(i.label) for i in got)
    # class c's draw does not depend on how many images class a has
    fewer_a = ImageSet(images.paths[5:], labels[5:], ["a", "b", "c"])
    assert [i.path for i in draw_support(fewer_a, 4, 0) if i.label == "c"] == [
        i.path for i in got if i.label == "c"
    ]


def test_prototype_baseline_is_the_argmax_over_the_support_centroids(toy, data, tmp_path):
    out = tmp_path / "proto"
    config = build_baseline("toy", data, out, "prototype", support_per_class=4, seed=3)
    assert config["weights"] == "pretrained" and config["trainable_params"] == 0
    assert config["baseline"]["support_per_class"] == {c: 4 for c in CLASSES}
    assert config["peak_rss_mb"] > 0 and config["s_per_it"] is None
    assert not (out / "model.safetensors").exists()
    support = json.loads((out / "adapter.json").read_text())["support_files"]
    assert len(support) == 12 and all(f.startswith("train/") for f in support)

    emb = {c: [_mean_colour(data / f) for f in support if f.split("/")[1] == c] for c in CLASSES}
    centroids = np.stack([np.mean(emb[c], 0) / np.linalg.norm(np.mean(emb[c], 0)) for c in CLASSES])
    tests = sorted((data / "test").rglob("*.png"))
    expected = [CLASSES[int(np.argmax(centroids @ _mean_colour(p)))] for p in tests]
    got = Classifier.load(out).predict(tests)
    assert [g.prediction for g in got] == expected
    assert sum(e != p.parent.name for e, p in zip(expected, tests)) == 2  # the reddish blues


def test_probe_counts_its_weights_and_zeroshot_has_no_adapter(toy, data, tmp_path):
    desc = write_descriptions(tmp_path / "good.jsonl", GOOD, "good")
    probe = build_baseline("toy", data, tmp_path / "probe", "probe", support_per_class=5)
    assert probe["trainable_params"] == 3 * 3 + 3  # W (C x D) and b (C) of the logistic regression
    zs = build_baseline("toy", data, tmp_path / "zs", "zeroshot", descriptions=desc)
    assert zs["trainable_params"] == 0 and zs["baseline"]["support_per_class"] == {}
    assert zs["descriptions"]["name"] == "good" and not (tmp_path / "zs" / "adapter.json").exists()
    assert Classifier.load(tmp_path / "zs").adapter is None


@pytest.mark.parametrize("method", ["zeroshot", "prototype", "probe", "tip"])
def test_a_baseline_run_is_accepted_by_evaluate_predict_and_table(toy, data, tmp_path, method):
    run = tmp_path / method
    _ok("baseline", "toy", "--data", data, "--method", method, "--out", run, "--support-per-class", "4")
    _ok("evaluate", run, "--data", data, "--out", run / "eval", "--bootstrap", "20")
    m = json.loads((run / "eval" / "metrics.json").read_text())
    # the zero-shot start of a baseline is its own frozen model scored with its text: the template
    assert m["baseline"]["recall@1"] == pytest.approx(16 / 18)
    if method == "zeroshot":
        assert m["recall@1"] == pytest.approx(16 / 18)
    _ok("predict", run, data / "test", "--output", tmp_path / "p.csv")
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 19
    _ok("table", run, "--out", tmp_path / "t.md")
    row = [c.strip() for c in (tmp_path / "t.md").read_text().splitlines()[2].strip("|").split("|")]
    assert row[0] == "toy" and row[1] == "–" and row[2] == "–"  # no learning rate, no iterations
    trainable = "12" if method == "probe" else "0"
    assert row[-3:-1] == [
        trainable,
        f"{json.loads((run / 'config.json').read_text())['peak_rss_mb']:.0f} MB RSS",
    ]
    assert (
        row[-1] == "no fine-tuning: zeroshot"
        if method == "zeroshot"
        else f"no fine-tuning: {method} (4/class)"
    )


def test_the_zero_shot_start_of_a_baseline_is_the_baseline_model_itself(toy, data, tmp_path):
    run = tmp_path / "zs"
    build_baseline("toy-random", data, run, "zeroshot", seed=5)
    _ok("evaluate", run, "--data", data, "--out", run / "eval", "--bootstrap", "10")
    m = json.loads((run / "eval" / "metrics.json").read_text())
    # same model, same text: the start row equals the headline (a start model rebuilt without the
    # baseline's seed draws other random text vectors, and other probabilities)
    assert m["baseline"]["nll"] == m["nll"] and m["baseline"]["mean_confidence"] == m["mean_confidence"]
    state = torch.random.get_rng_state()
    registry.build_pretrained("toy-random", {}, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)  # the seeded build leaves the caller's stream


def _handmade_run(root: Path, config: dict, recall: float) -> Path:
    (root / "eval").mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model": "lite", "classes": CLASSES, **config}))
    (root / "eval" / "metrics.json").write_text(json.dumps({"recall@1": recall, "n": 60, "split": "test"}))
    return root


def test_table_cost_columns_show_values_and_dashes_for_runs_without_them(tmp_path):
    from fungalzsl.eval.table import build_table, table_csv, table_markdown

    old = _handmade_run(tmp_path / "old", {"train": {"lr": 1e-4}}, 0.9)
    new = _handmade_run(tmp_path / "new", {"train": {"lr": 1e-4, "objective": "catlip"},
                                           "trainable_params": 426_512, "peak_rss_mb": 2048.4}, 0.95)  # fmt: skip
    capped = _handmade_run(tmp_path / "capped", {"baseline": {"method": "tip", "support_per_class": {"red": 2,
                           "green": 5, "blue": 5}}, "trainable_params": 0, "peak_rss_mb": 900.0}, 0.8)  # fmt: skip
    rows = build_table([old, new, capped])
    md = table_markdown(rows).splitlines()
    assert md[4].endswith("| 0 | 900 MB RSS | no fine-tuning: tip (2-5/class) |")
    assert "| Trainable params | Peak memory | objective |" in md[0]
    assert md[2].endswith("| – | – | multi_positive |")
    assert md[3].endswith("| 426.5 K | 2048 MB RSS | catlip |")
    csv_rows = [line.split(",") for line in table_csv(rows).splitlines()]
    assert csv_rows[0][-2:] == ["trainable_params", "peak_rss_mb"] and csv_rows[2][-2:] == [
        "426512",
        "2048.4",
    ]


def test_bad_input_is_one_line_and_writes_nothing(toy, data, tmp_path):
    out = tmp_path / "out"
    _one_line_error("unknown --method", "baseline", "toy", "--data", data, "--method", "knn", "--out", out)
    _one_line_error("does not exist", "baseline", "toy", "--data", tmp_path / "nope", "--out", out)
    _one_line_error(
        "options of 'lite'", "baseline", "toy", "--data", data, "--image-size", "64", "--out", out
    )
    partial = write_descriptions(tmp_path / "partial.jsonl", {"red": GOOD["red"], "green": GOOD["green"]})
    _one_line_error(
        "describes no blue", "baseline", "toy", "--data", data, "--descriptions", partial, "--out", out
    )
    (data / "train" / "purple").mkdir()
    _one_line_error("class folders not in the class list", "baseline", "toy", "--data", data, "--out", out)
    (data / "train" / "purple").rmdir()
    for f in (data / "train" / "green").iterdir():
        f.unlink()
    _one_line_error("have no images", "baseline", "toy", "--data", data, "--out", out)
    assert not out.exists()
    with pytest.raises(FungalError, match="at least 1"):
        build_baseline("toy", data, out, support_per_class=0)


def test_an_out_folder_holding_other_files_is_refused_and_kept(toy, data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _one_line_error("notes.txt", "baseline", "toy", "--data", data, "--out", out)
    assert (out / "notes.txt").read_text() == "mine" and sorted(p.name for p in out.iterdir()) == [
        "notes.txt"
    ]


def test_weights_that_rebuild_differently_are_refused(toy, data, tmp_path):
    run = tmp_path / "run"
    build_baseline("toy", data, run, "prototype", support_per_class=2)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "weights_sha256": "0" * 64}))
    with pytest.raises(FungalError, match="rebuilt here differ"):
        Classifier.load(run)
    _one_line_error("rebuilt here differ", "predict", run, data / "test")
    (run / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "seed"}))
    with pytest.raises(FungalError, match="lacks the integer 'seed'"):
        Classifier.load(run)


@pytest.mark.slow
def test_a_lite_baseline_rebuilds_the_weights_it_was_built_with(tmp_path):
    from tiny_data import make_dataset

    data = make_dataset(tmp_path / "data", {"train": 3, "test": 2}, size=32)
    run = tmp_path / "run"
    config = build_baseline("lite", data, run, "prototype", support_per_class=2, seed=7,
                            model_options={"image_size": 32, "embed_dim": 16})  # fmt: skip
    model, loaded = registry.load_run(run)
    assert registry.weights_fingerprint(model) == config["weights_sha256"] == loaded["weights_sha256"]
    other = registry.build_pretrained("lite", {"image_size": 32, "embed_dim": 16}, seed=8)
    assert not torch.equal(other.image_proj.weight, model.image_proj.weight)  # the seed draws the heads


def test_a_trained_run_without_weights_is_still_an_unfinished_training(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "lite", "status": "training"}))
    with pytest.raises(FungalError, match="its training has not finished"):
        registry.load_run(run)
    # "weights": "pretrained" only stands in for model.safetensors in a run that says so
    (run / "config.json").write_text(json.dumps({"model": "lite", "weights": "fine-tuned"}))
    with pytest.raises(FungalError, match="its training has not finished"):
        registry.load_run(run)


def test_a_zeroshot_baseline_can_be_adapted_to_a_labs_images(toy, data, tmp_path):
    run, adapted = tmp_path / "zs", tmp_path / "lab"
    _ok("baseline", "toy", "--data", data, "--method", "zeroshot", "--out", run)
    _ok("adapt", run, "--shots", data / "train", "--out", adapted, "--method", "prototype")
    config = json.loads((adapted / "config.json").read_text())
    assert config["weights"] == "pretrained" and not (adapted / "model.safetensors").exists()
    clf = Classifier.load(adapted)
    assert clf.adapter is not None and clf.adapter.method == "prototype"
    _one_line_error("already adapted", "adapt", adapted, "--shots", data / "train", "--out", tmp_path / "x")
