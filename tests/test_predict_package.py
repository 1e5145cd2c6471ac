"""The fungalzsl.predict package: its names load lazily, and the torch-free parts stay torch-free."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO

TORCH_FREE = ["fungalzsl.cli", "fungalzsl.predict.onnx", "fungalzsl.predict.result", "fungalzsl.predict.inputs",
              "fungalzsl.predict.zeroshot"]  # fmt: skip


def test_the_onnx_path_results_and_the_cli_do_not_import_torch():
    code = (
        f"import sys; import {', '.join(TORCH_FREE)}; from fungalzsl.predict import OnnxClassifier, Prediction; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}  # this checkout, not an installed copy
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_package_names_resolve_to_their_modules():
    import fungalzsl
    import fungalzsl.predict as predict
    from fungalzsl.predict import classifier, onnx, result

    assert predict.Classifier is classifier.Classifier is fungalzsl.Classifier
    assert predict.label_set is classifier.label_set
    assert predict.OnnxClassifier is onnx.OnnxClassifier and predict.export_onnx is onnx.export_onnx
    assert predict.Prediction is result.Prediction
    assert all(hasattr(predict, n) for n in predict.__all__)
    with pytest.raises(AttributeError):
        predict.no_such_name  # noqa: B018
