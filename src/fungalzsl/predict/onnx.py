"""ONNX export of a run's image tower plus its class embeddings, and a torch-free predictor.

``fungalzsl export RUN_DIR --out DIR`` writes ``DIR/image_encoder.onnx`` and ``DIR/classifier.json``
(class names, class embeddings, logit scale, and the image preprocessing as data). ``OnnxClassifier``
reproduces the preprocessing with Pillow and NumPy and runs the encoder on onnxruntime, so a lab can
classify images with neither torch nor a text model installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fungalzsl.errors import fail
from fungalzsl.io import atomic_path, atomic_write_json
from fungalzsl.predict.inputs import Images, classify
from fungalzsl.predict.result import Prediction
from fungalzsl.predict.zeroshot import class_probabilities_numpy

ENCODER = "image_encoder.onnx"
SPEC = "classifier.json"
_PIL_INTERP = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
    "box": Image.BOX,
    "hamming": Image.HAMMING,
}


def describe_transform(transform: Any) -> list[dict[str, Any]]:
    """Turn a torchvision preprocessing pipeline into a list of plain steps (or fail on an unknown one)."""
    from torchvision import transforms as T

    steps: list[dict[str, Any]] = []
    items = transform.transforms if isinstance(transform, T.Compose) else [transform]
    for t in items:
        if isinstance(t, T.Resize):
            size = t.size if isinstance(t.size, int) else list(t.size)
            if isinstance(size, list) and len(size) == 1:
                size = size[0]
            steps.append(
                {"op": "resize", "size": size, "interpolation": t.interpolation.value, "max_size": t.max_size}
            )
        elif isinstance(t, T.CenterCrop):
            steps.append({"op": "center_crop", "size": list(t.size)})
        elif isinstance(t, T.ToTensor):
            steps.append({"op": "to_tensor"})
        elif isinstance(t, T.Normalize):
            steps.append(
                {"op": "normalize", "mean": list(map(float, t.mean)), "std": list(map(float, t.std))}
            )
        elif callable(t) and getattr(t, "__name__", "") in ("_convert_to_rgb", "convert_to_rgb"):
            continue  # every image is RGB already (fungalzsl.images.to_rgb)
        else:
            raise fail(
                f"cannot export preprocessing step {type(t).__name__} to ONNX",
                "use the PyTorch predictor for this model",
            )
    return steps


def apply_steps(im: Image.Image, steps: list[dict[str, Any]]) -> np.ndarray:
    """The NumPy/Pillow twin of the torchvision pipeline: RGB PIL image -> (3, H, W) float32."""
    arr: np.ndarray | None = None
    for s in steps:
        if s["op"] == "resize":
            size, interp = s["size"], _PIL_INTERP[s["interpolation"]]
            if isinstance(size, int):
                w, h = im.size
                short, long = (w, h) if w <= h else (h, w)
                new_short, new_long = size, int(size * long / short)
                if s.get("max_size") and new_long > s["max_size"]:
                    new_short, new_long = int(s["max_size"] * new_short / new_long), s["max_size"]
                new = (new_short, new_long) if w <= h else (new_long, new_short)
            else:
                new = (size[1], size[0])
            if new != im.size:
                im = im.resize(new, interp)
        elif s["op"] == "center_crop":
            ch, cw = s["size"]
            w, h = im.size
            if w < cw or h < ch:  # torchvision pads with zeros before cropping
                canvas = Image.new("RGB", (max(w, cw), max(h, ch)))
                canvas.paste(im, ((max(w, cw) - w) // 2, (max(h, ch) - h) // 2))
                im, (w, h) = canvas, canvas.size
            left, top = round((w - cw) / 2.0), round((h - ch) / 2.0)
            im = im.crop((left, top, left + cw, top + ch))
        elif s["op"] == "to_tensor":
            arr = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0
        elif s["op"] == "normalize":
            assert arr is not None, "normalize before to_tensor"
            mean = np.asarray(s["mean"], dtype=np.float32)[:, None, None]
            std = np.asarray(s["std"], dtype=np.float32)[:, None, None]
            arr = (arr - mean) / std
    if arr is None:
        arr = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return arr.astype(np.float32)


def export_onnx(run_dir: str | Path, out: str | Path, opset: int = 17) -> Path:
    """Export the run's image encoder and class embeddings to ``out``; returns the ONNX file path."""
    import torch

    from fungalzsl.predict.classifier import Classifier

    clf = Classifier.load(run_dir)
    if clf.adapter is not None:
        # classifier.json holds one cosine classifier; a cache or probe on top would change what every
        # ONNX consumer computes, so the export says so rather than silently dropping the adaptation.
        raise fail(
            f"{run_dir} carries a few-shot '{clf.adapter.method}' adapter, which the ONNX export does not hold",
            "serve or predict the adapted run directory itself, or export the run it was adapted from",
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps = describe_transform(clf.model.preprocess)
    example = torch.from_numpy(apply_steps(Image.new("RGB", (256, 256), (200, 120, 30)), steps))[None]

    class _ImageEncoder(torch.nn.Module):
        def __init__(self, model: Any):
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model.encode_image(x)

    with atomic_path(out / ENCODER) as tmp:
        torch.onnx.export(
            _ImageEncoder(clf.model).eval(),
            (example,),
            str(tmp),
            input_names=["pixels"],
            output_names=["embedding"],
            dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    atomic_write_json(
        out / SPEC,
        {
            "format": "fungalzsl-onnx-v1",
            "classes": clf.classes,
            "class_embeddings": torch.nn.functional.normalize(clf.class_embeddings, dim=-1).tolist(),
            "logit_scale": clf.logit_scale,
            "preprocess": steps,
            "source_run": str(run_dir),
            "model": clf.config.get("model"),
        },
    )
    return out / ENCODER


def is_export_dir(path: str | Path) -> bool:
    return (Path(path) / SPEC).is_file() and (Path(path) / ENCODER).is_file()


class OnnxClassifier:
    """Classify images with an exported encoder on onnxruntime; same results type as ``Classifier``."""

    def __init__(self, export_dir: str | Path, threads: int | None = None):
        import onnxruntime as ort

        export_dir = Path(export_dir)
        if not is_export_dir(export_dir):
            raise fail(
                f"{export_dir} is not an ONNX export", "create one with 'fungalzsl export RUN_DIR --out DIR'"
            )
        spec = json.loads((export_dir / SPEC).read_text())
        self.classes: list[str] = spec["classes"]
        self.class_embeddings = np.asarray(spec["class_embeddings"], dtype=np.float32)
        self.logit_scale = float(spec["logit_scale"])
        self.steps = spec["preprocess"]
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(export_dir / ENCODER), opts, providers=["CPUExecutionProvider"]
        )

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(B, C) class probabilities for a batch of preprocessed images (B, 3, H, W)."""
        emb = self.session.run(["embedding"], {"pixels": batch.astype(np.float32)})[0]
        return class_probabilities_numpy(emb, self.class_embeddings, self.logit_scale)

    def predict(self, images: Images, batch_size: int = 32) -> list[Prediction]:
        """Classify files, folders, glob patterns or PIL images; unreadable inputs get an ``error``."""
        return classify(
            images,
            lambda im: apply_steps(im, self.steps),
            lambda batch: self.probabilities(np.stack(batch)),
            self.classes,
            batch_size,
        )
