"""``fungalzsl evaluate`` as a Python API: embed a split once, score it with one or more description sets,
write metrics.json, predictions.csv, figures and the report.

    from fungalzsl.eval import evaluate_run
    metrics = evaluate_run("runs/default/run", "data/fungi", "runs/default/eval", split="test")
    print(metrics["recall@1"], metrics["ci95"]["recall@1"])

Output directory (``--out``): ``metrics.json``, ``predictions.csv``, ``figures/*.png``, ``report.md``,
``report.html``. When the model is a run directory, a line pointing at the evaluation is appended to
``RUN/evaluations.jsonl`` so ``fungalzsl table RUN`` finds it wherever ``--out`` was."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fungalzsl.errors import fail
from fungalzsl.eval.classifier import DEFAULT_TEMPLATE, ZeroShotClassifier, build_classifier, fit_logit_scale
from fungalzsl.eval.metrics import classification_metrics, retrieval_recall
from fungalzsl.eval.sources import (
    ModelSource,
    align_labels,
    dataset_classes,
    load_eval_images,
    load_source,
    stored_class_embeddings,
    training_description_path,
)
from fungalzsl.io import append_jsonl, atomic_write_json, atomic_write_text, ensure_writable_dir
from fungalzsl.predict.embed import embed_images, embed_texts
from fungalzsl.text.records import DescriptionSet, load_description_set

# Classifiers that need only class names (chils uses descriptions for its parents when it has them).
NAME_ONLY = ("template", "waffle", "chils")


@dataclass
class Scored:
    """One description set's result on one split: probabilities plus the metrics computed from them."""

    name: str
    probs: np.ndarray
    metrics: dict[str, Any]


@dataclass
class EmbeddedSplit:
    """A split embedded once by one model, reused by every description set and classifier."""

    paths: list[Path]
    labels: np.ndarray
    classes: list[str]
    emb: torch.Tensor
    errors: list[str]
    seconds: float


def embed_split(
    model: Any, paths: Sequence[Path], labels: Sequence[int], classes: list[str], batch_size: int = 64
) -> EmbeddedSplit:
    """Embed every readable image; unreadable files are listed, not fatal (unless none is readable)."""
    t0 = time.perf_counter()
    emb, kept, errors = embed_images(model, paths, batch_size=batch_size)
    if not kept:
        raise fail(
            f"none of the {len(paths)} images could be read (first: {errors[0] if errors else '?'})",
            "check the --data directory",
        )
    return EmbeddedSplit(
        paths=[Path(paths[i]) for i in kept],
        labels=np.asarray([labels[i] for i in kept], dtype=np.int64),
        classes=classes,
        emb=emb,
        errors=errors,
        seconds=time.perf_counter() - t0,
    )


def score_set(
    split: EmbeddedSplit,
    clf: ZeroShotClassifier,
    name: str,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    text_emb: torch.Tensor | None = None,
    text_labels: Sequence[int] | None = None,
) -> Scored:
    """Probabilities and metrics of one classifier on an embedded split (+ retrieval if texts given)."""
    with torch.no_grad():
        probs = clf.probabilities(split.emb).double().numpy()
    m = classification_metrics(split.labels, probs, split.classes, n_boot=n_boot, seed=seed)
    m["retrieval"] = (
        retrieval_recall(split.emb.numpy(), split.labels, text_emb.numpy(), np.asarray(text_labels))
        if text_emb is not None and text_labels is not None and len(text_labels)
        else None
    )
    m["classifier"] = clf.method
    m["logit_scale"] = clf.logit_scale
    return Scored(name=name, probs=probs, metrics=m)


def _described_texts(ds: DescriptionSet | None, classes: list[str]) -> tuple[list[str], list[int]]:
    if ds is None:
        return [], []
    texts, owners = [], []
    for i, c in enumerate(classes):
        for t in ds.by_class.get(c, []):
            texts.append(t)
            owners.append(i)
    return texts, owners


def retrieval_metrics(
    model: Any, split: EmbeddedSplit, ds: DescriptionSet | None, seed: int, max_texts: int
) -> dict[str, dict[str, float]] | None:
    """Image↔text Recall@1/5/10 over ``ds``'s individual descriptions (None without a set)."""
    texts, owners = _described_texts(ds, split.classes)
    if not texts:
        return None
    if len(texts) > max_texts:
        # Retrieval over thousands of captions costs a text-encoder pass each; a seeded subsample
        # keeps the estimate unbiased and the run short.
        pick = np.sort(np.random.default_rng(seed).choice(len(texts), max_texts, replace=False))
        texts, owners = [texts[i] for i in pick], [owners[i] for i in pick]
    return retrieval_recall(
        split.emb.numpy(), split.labels, embed_texts(model, texts).numpy(), np.asarray(owners)
    )


def score_sets(
    source_model: Any,
    split: EmbeddedSplit,
    sets: list[DescriptionSet | None],
    *,
    classifier: str,
    stored: tuple[list[str], torch.Tensor] | None,
    n_boot: int,
    seed: int,
    hierarchy: dict[str, list[str]] | None,
    template: str,
    max_retrieval_texts: int,
    calibration: EmbeddedSplit | None = None,
) -> list[Scored]:
    """Score an embedded split with each description set (``None``: stored embeddings when the
    classifier is ``mean``, else class names only — template/waffle/chils). With ``calibration`` (another
    labelled split, embedded by the same model) each classifier's logit scale is refitted on it first."""
    out = []
    for ds in sets:
        by_class = ds.by_class if ds is not None else None
        class_emb = None
        if ds is None and stored is not None and classifier == "mean":
            names, emb = stored
            missing = [c for c in split.classes if c not in names]
            if missing:
                raise fail(
                    f"the run's stored class embeddings lack class(es): {', '.join(missing)}",
                    "pass --descriptions covering every class in the data",
                )
            class_emb = emb[[names.index(c) for c in split.classes]]
        if ds is not None:
            ds.require_classes(split.classes)
        clf = build_classifier(
            source_model,
            split.classes,
            classifier,
            by_class,
            template=template,
            seed=seed,
            hierarchy=hierarchy,
            class_emb=class_emb,
        )
        name = (
            ds.name
            if ds is not None
            else ("stored class embeddings" if class_emb is not None else classifier)
        )
        cal = None
        if calibration is not None:
            before = clf.logit_scale
            clf.logit_scale = fit_logit_scale(clf, calibration.emb, calibration.labels.tolist())
            cal = {"n": len(calibration.labels), "logit_scale_before": before, "logit_scale": clf.logit_scale}
        scored = score_set(split, clf, name, n_boot=n_boot, seed=seed)
        if cal is not None:
            scored.metrics["calibration"] = cal
        scored.metrics["retrieval"] = retrieval_metrics(source_model, split, ds, seed, max_retrieval_texts)
        scored.metrics["descriptions"] = (
            {
                "name": ds.name,
                "hash": ds.hash,
                "path": str(ds.path) if ds.path else None,
                "count": sum(len(v) for v in ds.by_class.values()),
            }
            if ds is not None
            else None
        )
        out.append(scored)
    return out


def evaluate_run(
    run_or_spec: Any,
    data: str | Path,
    out: str | Path,
    split: str | None = "test",
    descriptions: Sequence[str | Path] | None = None,
    *,
    classifier: str = "mean",
    also_classifiers: Sequence[str] = (),
    baseline: bool = True,
    images: str | Path | None = None,
    hierarchy: dict[str, list[str]] | None = None,
    template: str = DEFAULT_TEMPLATE,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
    figures: bool = True,
    max_retrieval_texts: int = 600,
    device: str = "cpu",
    record: bool = True,
    calibrate_on: str | None = None,
) -> dict[str, Any]:
    """Evaluate a run directory, a model spec (``lite``, ``openclip:...``) or a model object on a split.

    Without ``descriptions`` a run's stored class embeddings are used (``mean`` classifier) or its
    training description set; with several, each is scored and the first is the headline.
    ``also_classifiers`` are scored too, on the same image embeddings and the headline description set
    (``metrics["by_classifier"]``), e.g. ``("template", "waffle")``: the controls for whether the
    descriptions help. ``calibrate_on`` (e.g. ``"val"``) refits the temperature on that split of the
    same data before scoring (temperature scaling; the baseline keeps its own). ``record`` appends the
    evaluation to RUN/evaluations.jsonl (for ``table``); protocols that score a run on other data turn
    it off. Returns the metrics dict that is also written to ``out/metrics.json``."""
    if "," in classifier:  # 'mean,template,waffle' from a config file, as on the command line
        first, *rest = [c.strip() for c in classifier.split(",") if c.strip()]
        classifier, also_classifiers = first, [*rest, *also_classifiers]
    out = ensure_writable_dir(out)
    source = load_source(run_or_spec, device=device)
    found = load_eval_images(data, split, images)
    classes = dataset_classes(data, found)
    found = align_labels(found, classes)
    sets: list[DescriptionSet | None] = [load_description_set(p) for p in descriptions or []]
    stored = stored_class_embeddings(source)
    if not sets:
        train_desc = training_description_path(source)
        if stored is None or classifier != "mean":
            if train_desc is not None:
                sets = [load_description_set(train_desc)]
            elif classifier not in NAME_ONLY:
                raise fail(
                    "no descriptions to build class embeddings from",
                    "pass --descriptions FILE.jsonl (or --classifier template)",
                )
        if not sets:
            sets = [None]
    split_emb = embed_split(source.model, found.paths, found.labels, classes, batch_size)
    cal_split = None
    if calibrate_on:
        if calibrate_on == split:
            raise fail(f"--calibrate-on {calibrate_on} is the split being evaluated", "calibrate on val")
        held = align_labels(load_eval_images(data, calibrate_on, images), classes)
        cal_split = embed_split(source.model, held.paths, held.labels, classes, batch_size)
    kw = dict(
        classifier=classifier,
        n_boot=n_boot,
        seed=seed,
        hierarchy=hierarchy,
        template=template,
        max_retrieval_texts=max_retrieval_texts,
    )
    # Retrieval for the stored-embeddings case still needs texts: use the training set when on disk.
    scored = score_sets(source.model, split_emb, sets, stored=stored, calibration=cal_split, **kw)
    td = training_description_path(source)
    if sets == [None] and td is not None:
        scored[0].metrics["retrieval"] = retrieval_metrics(
            source.model, split_emb, load_description_set(td), seed, max_retrieval_texts
        )
    head = scored[0]
    metrics: dict[str, Any] = dict(head.metrics)
    metrics.update(
        classes=classes,
        split=split,
        data=str(data),
        model={
            "source": str(source.run_dir or source.label),
            "spec": source.spec or source.start_spec,
            "run_dir": str(source.run_dir) if source.run_dir else None,
        },
        unreadable=split_emb.errors,
        image_seconds=round(split_emb.seconds, 3),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    if cal_split is not None:
        metrics["calibration"] = {**metrics["calibration"], "split": calibrate_on}
    if len(scored) > 1:
        metrics["by_description_set"] = {s.name: s.metrics for s in scored}
    # The description set behind the headline, as text (the stored embeddings came from the training set).
    text_set = sets[0] if sets[0] is not None else (load_description_set(td) if td is not None else None)
    if also_classifiers:
        metrics["by_classifier"] = {classifier: head.metrics}
        for name in also_classifiers:
            only_names = name in ("template", "waffle")  # chils uses the set for its parents
            one = score_sets(source.model, split_emb, [None if only_names else text_set], stored=None,
                             calibration=cal_split, **{**kw, "classifier": name})  # fmt: skip
            metrics["by_classifier"][name] = one[0].metrics
    base_scored: list[Scored] = []
    if baseline and source.run_dir is not None and source.start_spec:
        base = build_start_model(source).to(device).eval()
        base_split = embed_split(base, found.paths, found.labels, classes, batch_size)
        base_split = _restrict(base_split, split_emb.paths)
        # Same texts as the headline; the start model has no stored embeddings, so it embeds them itself.
        base_sets = [text_set] if text_set is not None else [None]
        base_cls = "template" if text_set is None and classifier == "mean" else classifier
        base_scored = score_sets(base, base_split, base_sets, stored=None, **{**kw, "classifier": base_cls})
        metrics["baseline"] = {"model": source.start_spec, **base_scored[0].metrics}
    atomic_write_json(out / "metrics.json", metrics)
    write_predictions(out / "predictions.csv", split_emb, head.probs)
    if figures:
        from fungalzsl.eval.report import write_report

        write_report(out, split_emb, scored, base_scored, source)
    if record and source.run_dir is not None:
        append_jsonl(
            source.run_dir / "evaluations.jsonl",
            [
                {
                    "out": str(out.resolve()),
                    "split": split,
                    "data": str(data),
                    "classifier": classifier,
                    "descriptions": metrics.get("descriptions"),
                    "recall@1": metrics["recall@1"],
                    "created_at": metrics["created_at"],
                }
            ],
        )
    return metrics


def build_start_model(source: ModelSource) -> Any:
    """The weights fine-tuning started from: the same spec and backend options, and the training seed
    set first, so heads that training initialised at random (``lite``) are the same random heads."""
    from fungalzsl.models import build_model

    options = dict(source.config.get("model_options") or {})
    seed = (source.config.get("train") or {}).get("seed")
    if isinstance(seed, int):
        torch.manual_seed(seed)
    return build_model(source.start_spec, **options)


def _restrict(split: EmbeddedSplit, paths: list[Path]) -> EmbeddedSplit:
    """Keep only ``paths`` (both models must be scored on the same images to be compared)."""
    keep = {p: i for i, p in enumerate(split.paths)}
    idx = [keep[p] for p in paths if p in keep]
    return EmbeddedSplit(
        [split.paths[i] for i in idx],
        split.labels[idx],
        split.classes,
        split.emb[idx],
        split.errors,
        split.seconds,
    )


def write_predictions(path: Path, split: EmbeddedSplit, probs: np.ndarray) -> None:
    """One row per image: path, true and predicted class, correctness, confidence, one column per class."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "true", "prediction", "correct", "confidence", *(f"p_{c}" for c in split.classes)])
    pred = probs.argmax(axis=1)
    for p, y, k, row in zip(split.paths, split.labels, pred, probs):
        w.writerow(
            [
                str(p),
                split.classes[y],
                split.classes[k],
                int(y == k),
                f"{row[k]:.6f}",
                *(f"{v:.6f}" for v in row),
            ]
        )
    atomic_write_text(path, buf.getvalue())


__all__ = ["EmbeddedSplit", "ModelSource", "Scored", "embed_split", "evaluate_run", "score_set", "score_sets"]
