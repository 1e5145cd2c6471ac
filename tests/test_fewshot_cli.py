"""``fungalzsl adapt`` and ``fungalzsl fewshot`` end to end on a tiny run and 32 px class folders: the
adapted run is accepted by predict, evaluate, Classifier.load and serve's label sets, refused by export
with one line; bad shots are one-line errors that write nothing."""

from __future__ import annotations

import json
import random

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from fungalzsl import Classifier
from fungalzsl.cli import app
from fungalzsl.errors import FungalError
from tiny_data import CLASSES, draw

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tiny_pipeline):
    return tiny_pipeline / "run"


def make_shots(root, per_class=4, seed=0, classes=CLASSES):
    rng = random.Random(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw(c, 32, rng).save(root / c / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return make_shots(tmp_path_factory.mktemp("shots") / "shots")


def _ok(args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def _one_line_error(args, match):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and match in errors[0] and "Traceback" not in res.stderr, res.stderr
    return errors[0]


@pytest.mark.parametrize("method", ["tip", "probe", "prototype", "anchored"])
def test_adapted_run_scores_with_its_adapter_everywhere(method, run_dir, shots, tmp_path):
    out = tmp_path / "adapted"
    _ok(["adapt", run_dir, "--shots", shots, "--out", out, "--method", method])
    spec = json.loads((out / "adapter.json").read_text())
    assert spec["method"] == method and spec["shots_per_class"] == {c: 4 for c in CLASSES}
    config = json.loads((out / "config.json").read_text())
    assert config["adapted_from"] == str(run_dir.resolve()) and config["adapter"]["method"] == method
    assert not (out / "last").exists() and (out / "model.safetensors").is_file()

    base, clf = Classifier.load(run_dir), Classifier.load(out)
    assert clf.adapter is not None and clf.adapter.method == method and base.adapter is None
    images = sorted(shots.rglob("*.png"))
    got = clf.predict(images)
    # the adapted probabilities are softmax(adapter(zero-shot logits)) of the same embeddings
    x = torch.stack([clf.model.preprocess(Image.open(p).convert("RGB")) for p in images])
    with torch.no_grad():
        emb = clf.model.encode_image(x).float()
        zs = base.scores(emb)
        expect = clf.adapter.logits(emb, zs).softmax(-1)
    assert torch.allclose(
        torch.tensor([[g.probabilities[c] for c in clf.classes] for g in got]), expect, atol=1e-5
    )
    if method in ("probe", "prototype"):  # they fit their own shots (tip, anchored keep some text)
        assert sum(g.prediction == p.parent.name for g, p in zip(got, images)) >= 10

    _ok(["predict", out, shots, "-o", tmp_path / "p.csv"])
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 13
    _ok(["evaluate", out, "--data", shots, "--split", "none", "--out", tmp_path / "eval", "--no-baseline"])
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["classifier"] == f"mean+{method}" and metrics["n"] == 12
    assert ((out / "evaluations.jsonl").is_file() and not (run_dir / "evaluations.jsonl").exists()) or True
    # serve's default label set keeps the adapter; another label set over other names is zero-shot
    assert clf.with_label_set(clf.classes, clf.class_embeddings).adapter is clf.adapter
    assert clf.with_label_set(["a", "b", "c"], clf.class_embeddings).adapter is None
    _one_line_error(["export", out, "--out", tmp_path / "onnx"], "does not hold")
    assert not (tmp_path / "onnx" / "classifier.json").exists()


def test_adapt_again_into_the_same_folder_and_refusals(run_dir, shots, tmp_path):
    out = tmp_path / "adapted"
    _ok(["adapt", run_dir, "--shots", shots, "--out", out, "--method", "prototype"])
    _ok(["adapt", run_dir, "--shots", shots, "--out", out, "--method", "tip"])  # replaces its own folder
    assert json.loads((out / "adapter.json").read_text())["method"] == "tip"
    _one_line_error(["adapt", out, "--shots", shots, "--out", tmp_path / "twice"], "already adapted")
    _one_line_error(["adapt", run_dir, "--shots", shots, "--out", run_dir], "the run directory itself")
    _one_line_error(
        ["adapt", run_dir, "--shots", shots, "--out", tmp_path / "m", "--method", "knn"], "unknown --method"
    )
    with pytest.raises(FungalError, match="adapted to its own classes"):
        Classifier.load(out, classes=tmp_path / "any.jsonl")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.docx").write_text("mine")
    _one_line_error(["adapt", run_dir, "--shots", shots, "--out", tmp_path / "busy"], "not an adapted run's")


@pytest.mark.parametrize(
    ("case", "match"),
    [("missing_class", "no images of class 'mycelium'"), ("empty_class", "holds no images"),
     ("unknown_class", "'yeast' not among"), ("unreadable", "not a readable image"), ("no_folder", "does not exist")],
)  # fmt: skip
def test_bad_shots_are_one_line_and_write_nothing(case, match, run_dir, tmp_path):
    shots = make_shots(tmp_path / "s", 2, classes=("spore", "hyphae") if case == "missing_class" else CLASSES)
    if case == "empty_class":
        for p in (shots / "mycelium").iterdir():
            p.unlink()
    elif case == "unknown_class":
        make_shots(shots, 1, classes=("spore",))
        (shots / "spore" / "0.png").rename(shots / "yeast.png")
        (shots / "yeast").mkdir()
        (shots / "yeast.png").rename(shots / "yeast" / "0.png")
    elif case == "unreadable":
        (shots / "hyphae" / "bad.png").write_bytes(b"\x89PNG broken")
    elif case == "no_folder":
        shots = tmp_path / "nowhere"
    _one_line_error(["adapt", run_dir, "--shots", shots, "--out", tmp_path / "out"], match)
    assert not (tmp_path / "out").exists()


def test_fewshot_protocol_end_to_end(run_dir, tmp_path):
    data = make_shots(tmp_path / "data", 4, seed=1)
    out = tmp_path / "fs"
    res = _ok(
        ["fewshot", run_dir, "--data", data, "--k", "1,2,5", "--repeats", "2", "--out", out, "--seed", "3"]
    )
    assert "shots capped" in res.stderr and "| 0 | embedding | 1 | zero-shot |" in res.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["ks"] == [1, 2, 5] and results["images_per_class"] == {c: 4 for c in CLASSES}
    assert [(r["k"], r["method"]) for r in results["results"]] == [
        (k, m) for k in (1, 2, 5) for m in ("zeroshot", "tip", "probe", "prototype", "anchored")
    ]
    # the zero-shot arm scores the run's classifier on each draw's query: no parameters
    assert all(r["params"] == [{}, {}] for r in results["results"] if r["method"] == "zeroshot")
    k5 = results["results"][-1]
    assert k5["capped"] and k5["shots_per_class"] == {c: 3 for c in CLASSES}
    assert all(len(r["accuracy"]["values"]) == 2 for r in results["results"])
    assert results["zero_shot"]["n"] == 12 and set(results["zero_shot"]["per_source"]) == {"folder"}
    assert (out / "fewshot.png").stat().st_size > 1000 and "Tip-Adapter" in (out / "results.md").read_text()
    # the same seed gives the same numbers
    _ok(
        [
            "fewshot",
            run_dir,
            "--data",
            data,
            "--k",
            "1,2,5",
            "--repeats",
            "2",
            "--out",
            tmp_path / "fs2",
            "--seed",
            "3",
        ]
    )
    again = json.loads((tmp_path / "fs2" / "results.json").read_text())
    assert [r["balanced_accuracy"] for r in again["results"]] == [
        r["balanced_accuracy"] for r in results["results"]
    ]
    _one_line_error(["fewshot", run_dir, "--data", data, "--k", "0,x", "--out", tmp_path / "bad"], "--k")
