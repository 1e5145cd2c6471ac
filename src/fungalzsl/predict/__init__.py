"""Inference: the zero-shot rule, the PyTorch and ONNX classifiers, and ``fungalzsl predict/export``.

    zeroshot    the rule shared by training, evaluation and prediction (class embeddings, probabilities,
                the logit-scale clamp, the stored class_embeddings.safetensors)
    embed       embedding images and texts in batches
    inputs      the one path from files / folders / globs / PIL images to ``Prediction`` rows
    classifier  ``Classifier``: a trained run, PyTorch
    onnx        ``fungalzsl export`` and ``OnnxClassifier``: the same on onnxruntime, without torch
    result      ``Prediction``, the row every path returns (torch-free)
    cli         the ``predict`` and ``export`` commands

Nothing is imported here: the names below load their module on first use (PEP 562), so the ONNX path
and ``result`` never import torch and ``fungalzsl --help`` stays fast."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from fungalzsl.predict.classifier import Classifier, label_set
    from fungalzsl.predict.onnx import OnnxClassifier, export_onnx
    from fungalzsl.predict.result import Prediction

_HOME = {
    "Classifier": "classifier",
    "label_set": "classifier",
    "OnnxClassifier": "onnx",
    "export_onnx": "onnx",
    "Prediction": "result",
}
__all__ = ["Classifier", "OnnxClassifier", "Prediction", "export_onnx", "label_set"]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
