"""Prediction from a run directory: the Python API, the CLI, ONNX parity, and every kind of bad input."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from fungalzsl import Classifier
from fungalzsl.cli import app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tiny_pipeline):
    return tiny_pipeline / "run"


@pytest.fixture(scope="module")
def test_images(tiny_pipeline):
    return sorted((tiny_pipeline / "data" / "test").rglob("*.png"))


@pytest.fixture(scope="module")
def clf(run_dir):
    return Classifier.load(run_dir)


@pytest.fixture()
def odd_images(tmp_path, test_images):
    """One file per awkward case a lab may feed us."""
    src = Image.open(test_images[0]).convert("RGB")
    d = tmp_path / "odd"
    d.mkdir()
    src.convert("L").save(d / "gray.png")
    src.convert("RGBA").save(d / "rgba.png")
    src.convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray(np.asarray(src.convert("L"), dtype=np.uint16) * 257).save(d / "sixteen.png")
    (d / "notes.txt").write_text("not an image")
    (d / "fake.png").write_bytes(b"this is not a png")
    data = (d / "gray.png").read_bytes()
    (d / "truncated.png").write_bytes(data[: len(data) // 2])
    Image.new("L", (9000, 9000)).save(d / "bomb.png")  # 81 MP: over the decompression-bomb limit
    return d


def test_api_predicts_every_class_with_probabilities_summing_to_one(clf, test_images):
    results = clf.predict(test_images)
    assert len(results) == len(test_images)
    for r in results:
        assert r.ok and r.prediction in clf.classes
        assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert r.prediction == max(r.probabilities, key=r.probabilities.get)
    truth = [p.parent.name for p in test_images]
    assert np.mean([r.prediction == t for r, t in zip(results, truth)]) >= 0.5


def test_api_accepts_pil_images_folders_and_globs(clf, test_images, tiny_pipeline):
    pil = clf.predict(Image.open(test_images[0]))
    by_path = clf.predict(test_images[0])
    assert pil[0].probabilities == pytest.approx(by_path[0].probabilities)
    folder = clf.predict(tiny_pipeline / "data" / "test")
    pattern = clf.predict(str(tiny_pipeline / "data" / "test" / "*" / "*.png"))
    assert [r.path for r in folder] == [r.path for r in pattern] == [str(p) for p in test_images]


def test_odd_formats_are_classified_and_bad_files_reported(clf, odd_images):
    results = {r.path.split("/")[-1]: r for r in clf.predict(odd_images)}
    for ok in ("gray.png", "rgba.png", "cmyk.jpg", "sixteen.png"):
        assert results[ok].ok, results[ok].error
    for bad, why in (
        ("fake.png", "not a readable image"),
        ("truncated.png", "not a readable image"),
        ("bomb.png", "larger than"),
    ):
        assert not results[bad].ok and why in results[bad].error
    assert "notes.txt" not in results  # folders are searched for image files only


def test_cli_writes_csv_with_one_row_per_input_and_keeps_going_past_errors(run_dir, odd_images, tmp_path):
    out = tmp_path / "results.csv"
    missing = tmp_path / "missing.png"
    res = CliRunner().invoke(
        app, ["predict", str(run_dir), str(odd_images), str(missing), "--output", str(out)]
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert set(rows[0]) == {"path", "prediction", "p_spore", "p_hyphae", "p_mycelium", "error"}
    by_name = {r["path"].split("/")[-1]: r for r in rows}
    assert by_name["gray.png"]["prediction"] and not by_name["gray.png"]["error"]
    assert by_name["missing.png"]["error"] and not by_name["missing.png"]["prediction"]
    assert "skipped" in res.stderr


def test_cli_json_output(run_dir, test_images, tmp_path):
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["predict", str(run_dir), str(test_images[0]), "-o", str(out)])
    assert res.exit_code == 0
    data = json.loads(out.read_text())
    assert data["classes"] == ["spore", "hyphae", "mycelium"] and len(data["results"]) == 1


@pytest.mark.parametrize("case", ["nothing_readable", "empty_folder", "missing_run", "bad_suffix"])
def test_cli_fails_with_one_line_when_nothing_can_be_done(case, run_dir, tmp_path):
    args = ["predict", str(run_dir)]
    if case == "nothing_readable":
        (tmp_path / "x.png").write_bytes(b"nope")
        args += [str(tmp_path / "x.png")]
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        args += [str(tmp_path / "empty")]
    elif case == "missing_run":
        args = ["predict", str(tmp_path / "no_run"), str(tmp_path)]
    else:
        args += [str(tmp_path), "--output", str(tmp_path / "r.xlsx")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    error_lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "Traceback" not in res.stderr


def test_mismatched_checkpoint_is_refused(run_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "run"
    shutil.copytree(run_dir, bad)
    weights = load_file(str(bad / "model.safetensors"))
    name = next(k for k, v in weights.items() if v.ndim == 2)
    weights[name] = torch.zeros(3, 3)
    save_file(weights, str(bad / "model.safetensors"))
    res = CliRunner().invoke(app, ["predict", str(bad), str(tmp_path)])
    assert res.exit_code == 2 and "error:" in res.stderr and "Traceback" not in res.stderr


def test_new_label_set_at_predict_time(run_dir, test_images, tmp_path):
    descs = tmp_path / "two.jsonl"
    descs.write_text(
        "".join(
            json.dumps({"class": c, "text": t}) + "\n"
            for c, t in [
                ("early", "round yellow spores, isolated single cells"),
                ("late", "dense red branching network of mycelium filaments"),
            ]
        )
    )
    clf = Classifier.load(run_dir, classes=descs)
    assert clf.classes == ["early", "late"]
    r = clf.predict(test_images[0])[0]
    assert set(r.probabilities) == {"early", "late"}


@pytest.fixture(scope="module")
def onnx_dir(run_dir, tmp_path_factory):
    from fungalzsl.predict.onnx import export_onnx

    out = tmp_path_factory.mktemp("onnx")
    export_onnx(run_dir, out)
    return out


def test_onnx_export_matches_pytorch(onnx_dir, clf, test_images):
    from fungalzsl.predict.onnx import OnnxClassifier, apply_steps, describe_transform

    onnx_clf = OnnxClassifier(onnx_dir)
    im = Image.open(test_images[0]).convert("RGB")
    # The NumPy preprocessing reproduces torchvision's exactly ...
    ours = apply_steps(im, describe_transform(clf.model.preprocess))
    np.testing.assert_allclose(ours, clf.model.preprocess(im).numpy(), atol=1e-6)
    # ... and the ONNX encoder gives the same probabilities as PyTorch.
    torch_p = np.array([[r.probabilities[c] for c in clf.classes] for r in clf.predict(test_images)])
    onnx_p = np.array([[r.probabilities[c] for c in onnx_clf.classes] for r in onnx_clf.predict(test_images)])
    np.testing.assert_allclose(onnx_p, torch_p, atol=1e-4)
    res = CliRunner().invoke(app, ["predict", str(onnx_dir), str(test_images[0])])
    assert res.exit_code == 0 and "1 of 1 images classified" in res.output


def test_onnx_and_pytorch_take_the_same_inputs_the_same_way(onnx_dir, clf, odd_images, test_images):
    from fungalzsl.predict.onnx import OnnxClassifier

    inputs = [odd_images, str(odd_images / "missing.png"), Image.open(test_images[0]), str(test_images[0])]
    torch_rows = clf.predict(inputs)
    onnx_rows = OnnxClassifier(onnx_dir).predict(inputs)
    assert [(r.path, r.error) for r in onnx_rows] == [(r.path, r.error) for r in torch_rows]
    assert [r.path for r in torch_rows][-2:] == [str(test_images[0])] * 2  # a PIL image keeps its file name
    for a, b in zip(onnx_rows, torch_rows):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-4)
    # a single path (not a list) is one input for both
    assert (
        len(OnnxClassifier(onnx_dir).predict(str(test_images[0])))
        == len(clf.predict(str(test_images[0])))
        == 1
    )
