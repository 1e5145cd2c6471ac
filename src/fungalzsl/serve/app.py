"""The web page behind ``fungalzsl serve``: upload images, see per-class probabilities, download a CSV.

Uploads are parsed as they stream in and kept in memory within the request limits (count, per-file
and per-request size, and a deadline for the whole body: :mod:`fungalzsl.serve.upload`), decoded with
the same robust loader as the CLI, and never written to disk. The model runs on one worker thread
behind a bounded queue (:mod:`fungalzsl.serve.worker`: 503 + ``Retry-After`` when it is full), so the
page and ``/api/info`` answer while a prediction runs; after a prediction request that grew the
process, the freed memory is handed back to the OS (:mod:`fungalzsl.serve.memory`). One classifier is
shared; each label set (the run's own classes plus any description sets given at start-up) is
embedded once at start-up."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image

from fungalzsl.images import MAX_IMAGE_PIXELS, ImageReadError, load_image
from fungalzsl.predict.classifier import Classifier, label_set
from fungalzsl.serve.memory import HeapTrimmer
from fungalzsl.serve.upload import UploadedFile, read_upload
from fungalzsl.serve.worker import ModelWorker

DEFAULT_SET = "run"
DEFAULT_QUEUE = 4  # requests in the server at once (one classifying, the rest uploading or waiting)
DEFAULT_UPLOAD_TIMEOUT = 30.0  # seconds for a whole request body to arrive (408 after)
BATCH = 16  # images decoded and classified together


def classify_uploads(
    scorer: Classifier, files: list[UploadedFile], max_file_mb: float
) -> list[dict[str, Any]]:
    """One result per file; runs on the model thread. Images are decoded a batch at a time (at most
    ``BATCH`` images or ``MAX_IMAGE_PIXELS`` pixels), and each upload's bytes are dropped once decoded,
    so a request never holds all its images decoded at once."""
    results: list[dict[str, Any]] = []
    batch: list[tuple[int, Image.Image]] = []

    def flush() -> None:
        for (i, _), p in zip(batch, scorer.predict([im for _, im in batch], batch_size=BATCH)):
            results[i].update(prediction=p.prediction, probabilities=p.probabilities, error=p.error)
        batch.clear()

    for f in files:
        entry: dict[str, Any] = {"name": f.name, "prediction": None, "probabilities": {}, "error": None}
        results.append(entry)
        if f.data is None:
            entry["error"] = f"{f.name}: larger than {max_file_mb:g} MB (refused)"
            continue
        data, f.data = bytes(f.data), None
        try:
            batch.append((len(results) - 1, load_image(io.BytesIO(data), name=f.name)))
        except ImageReadError as e:
            entry["error"] = str(e)
        del data
        if len(batch) == BATCH or sum(im.width * im.height for _, im in batch) >= MAX_IMAGE_PIXELS:
            flush()
    if batch:
        flush()
    return results


class _TrimAfterPredict:
    """ASGI middleware: once a prediction request is answered (its buffers freed, whatever the outcome),
    let ``HeapTrimmer`` hand grown memory back to the OS, off the event loop (it walks the heap)."""

    def __init__(self, app: Any, trimmer: HeapTrimmer):
        self.app, self.trimmer = app, trimmer

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http" and scope.get("path") == "/api/predict":
                await anyio.to_thread.run_sync(self.trimmer)


def create_app(
    clf: Classifier,
    description_sets: dict[str, Path] | None = None,
    max_files: int = 64,
    max_file_mb: float = 20.0,
    max_upload_mb: float = 200.0,
    max_queue: int = DEFAULT_QUEUE,
    trim_memory: bool = True,
    upload_timeout: float = DEFAULT_UPLOAD_TIMEOUT,
) -> FastAPI:
    """Build the FastAPI app around a loaded classifier (``trim_memory=False`` only to measure)."""
    label_sets: dict[str, tuple[list[str], torch.Tensor]] = {DEFAULT_SET: (clf.classes, clf.class_embeddings)}
    for name, path in (description_sets or {}).items():
        label_sets[name] = label_set(clf.model, path)
    max_file, max_body = int(max_file_mb * 1024 * 1024), int(max_upload_mb * 1024 * 1024)
    worker = ModelWorker(max_queue)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        worker.close()

    app = FastAPI(title="fungalzsl", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.worker = worker
    if trim_memory:
        app.add_middleware(_TrimAfterPredict, trimmer=HeapTrimmer())
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
            "max_upload_mb": max_upload_mb,
            "run": str(clf.run_dir) if clf.run_dir else None,
        }

    @app.post("/api/predict")
    async def predict(request: Request) -> JSONResponse:
        async with worker.slot():
            upload = await read_upload(
                request, max_files=max_files, max_file=max_file, max_body=max_body, timeout=upload_timeout
            )
            label_set_name = upload.fields.get("label_set", DEFAULT_SET)
            if label_set_name not in label_sets:
                raise HTTPException(
                    400, f"unknown label set {label_set_name!r}; choose one of {sorted(label_sets)}"
                )
            classes, emb = label_sets[label_set_name]
            scorer = clf.with_label_set(classes, emb)
            results = await worker.run(classify_uploads, scorer, upload.files, max_file_mb)
        return JSONResponse({"classes": classes, "label_set": label_set_name, "results": results})

    return app
