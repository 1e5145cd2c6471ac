"""The web page behind ``fungalzsl serve``: upload images, see per-class probabilities, download a CSV.

Uploads are read into memory (bounded by size and count), decoded with the same robust loader as the
CLI, and never written to disk. One classifier is shared; each label set (the run's own classes plus
any description sets given at start-up) is embedded once at start-up."""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image

from fungalzsl.data import ImageReadError, load_image
from fungalzsl.predict.classifier import Classifier, label_set

DEFAULT_SET = "run"


def create_app(
    clf: Classifier,
    description_sets: dict[str, Path] | None = None,
    max_files: int = 64,
    max_file_mb: float = 20.0,
) -> FastAPI:
    """Build the FastAPI app around a loaded classifier."""
    label_sets: dict[str, tuple[list[str], torch.Tensor]] = {DEFAULT_SET: (clf.classes, clf.class_embeddings)}
    for name, path in (description_sets or {}).items():
        label_sets[name] = label_set(clf.model, path)
    max_bytes = int(max_file_mb * 1024 * 1024)
    app = FastAPI(title="fungalzsl", docs_url=None, redoc_url=None)
    page = (resources.files("fungalzsl") / "serve" / "static" / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {
            "label_sets": {k: v[0] for k, v in label_sets.items()},
            "default": DEFAULT_SET,
            "max_files": max_files,
            "max_file_mb": max_file_mb,
            "run": str(clf.run_dir) if clf.run_dir else None,
        }

    @app.post("/api/predict")
    async def predict(
        request: Request,
        files: list[UploadFile] = File(...),
        label_set_name: str = Form(DEFAULT_SET, alias="label_set"),
    ) -> JSONResponse:
        if label_set_name not in label_sets:
            raise HTTPException(
                400, f"unknown label set {label_set_name!r}; choose one of {sorted(label_sets)}"
            )
        if len(files) > max_files:
            raise HTTPException(413, f"too many files ({len(files)}); at most {max_files} per request")
        classes, emb = label_sets[label_set_name]
        scorer = clf.with_label_set(classes, emb)
        results: list[dict[str, Any]] = []
        images: list[tuple[int, Image.Image]] = []
        for f in files:
            name = Path(f.filename or "upload").name
            data = await f.read(max_bytes + 1)
            entry: dict[str, Any] = {"name": name, "prediction": None, "probabilities": {}, "error": None}
            if len(data) > max_bytes:
                entry["error"] = f"{name}: larger than {max_file_mb:g} MB (refused)"
            else:
                try:
                    images.append((len(results), load_image(io.BytesIO(data), name=name)))
                except ImageReadError as e:
                    entry["error"] = str(e)
            results.append(entry)
        if images:
            preds = scorer.predict([im for _, im in images])
            for (i, _), p in zip(images, preds):
                results[i].update(prediction=p.prediction, probabilities=p.probabilities, error=p.error)
        return JSONResponse({"classes": classes, "label_set": label_set_name, "results": results})

    return app
