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
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fungalzsl.errors import FungalError
from fungalzsl.eval.attributes import BLEND_WEIGHT, check_blend_weight
from fungalzsl.eval.classifier import DEFAULT_TEMPLATE
from fungalzsl.eval.imagecache import ImageStore, cached_image
from fungalzsl.eval.inputs import EvalInputs, embed_inputs, load_inputs, stacking_inputs
from fungalzsl.eval.metrics import per_source_metrics
from fungalzsl.eval.report import training_summary
from fungalzsl.eval.scoring import (
    EmbeddedSplit,
    Scored,
    Stacking,
    embed_split,
    restrict,
    retrieval_metrics,
    score_set,
    score_sets,
)
from fungalzsl.eval.sources import (
    ModelSource,
)
from fungalzsl.eval.textcache import TextStore, cached_text
from fungalzsl.io import append_jsonl, atomic_write_json, atomic_write_text
from fungalzsl.models.registry import is_pretrained_run
from fungalzsl.outdir import staged_dir
from fungalzsl.progress import step
from fungalzsl.rundir import EVALUATIONS_FILE
from fungalzsl.text.records import DescriptionSet, load_description_set


@dataclass
class Scores:
    """Every score of one evaluation: the headline sets, the control classifiers, the start model."""

    scored: list[Scored]
    by_classifier: dict[str, dict[str, Any]] | None
    baseline: list[Scored]
    text_set: DescriptionSet | None  # the description set behind the headline, as text


def classify(
    inputs: EvalInputs,
    split_emb: EmbeddedSplit,
    cal_split: EmbeddedSplit | None,
    *,
    classifier: str,
    also_classifiers: Sequence[str],
    baseline: bool,
    batch_size: int,
    device: str,
    kw: dict[str, Any],
    store: TextStore | None = None,
    image_store: ImageStore | None = None,
    stacking: Stacking | None = None,
) -> Scores:
    """Score the headline description sets, then each control classifier on the headline's texts,
    then the start model (``baseline``) on the same images and texts. ``kw``: score_sets' options;
    ``store``: where every text tower's embedded texts are kept for the whole evaluation;
    ``image_store``: the image-backbone outputs the start model shares when its backbone is the run's;
    ``stacking``: calibrated stacking of the headline sets (eval.gzsl), not of the controls or the
    start model."""
    source, sets, td, seed = inputs.source, inputs.sets, inputs.training_descriptions, kw["seed"]
    model = cached_text(source.model, store)
    scored = score_sets(
        model, split_emb, sets, stored=inputs.stored, calibration=cal_split, adapter=source.adapter,
        stacking=stacking, **kw,
    )  # fmt: skip
    # Retrieval for the stored-embeddings case still needs texts: use the training set when on disk.
    if sets == [None] and td is not None:
        scored[0].metrics["retrieval"] = retrieval_metrics(
            model, split_emb, load_description_set(td), seed, kw["max_retrieval_texts"]
        )
    # The description set behind the headline, as text (the stored embeddings came from the training set).
    text_set = sets[0] if sets[0] is not None else (load_description_set(td) if td is not None else None)
    by_classifier = None
    if also_classifiers:
        by_classifier = {classifier: scored[0].metrics}
        for name in also_classifiers:
            only_names = name in ("template", "waffle")  # chils uses the set for its parents
            one = score_sets(model, split_emb, [None if only_names else text_set], stored=None,
                             calibration=cal_split, **{**kw, "classifier": name})  # fmt: skip
            by_classifier[name] = one[0].metrics
    base_scored: list[Scored] = []
    if baseline and source.run_dir is not None and source.start_spec:
        if is_pretrained_run(source.config):  # a baseline: its model is its start model, embedded already
            base, base_split = source.model, split_emb
        else:
            base = build_start_model(source).to(device).eval()
            found = inputs.found
            base_split = embed_split(
                cached_image(base, image_store), found.paths, found.labels, inputs.classes, batch_size
            )
            base_split = restrict(base_split, split_emb.paths)
        # Same texts as the headline; the start model has no stored embeddings, so it embeds them itself.
        base_sets = [text_set] if text_set is not None else [None]
        base_cls = "template" if text_set is None and classifier == "mean" else classifier
        base_scored = score_sets(
            cached_text(base, store), base_split, base_sets, stored=None, **{**kw, "classifier": base_cls}
        )
    return Scores(scored, by_classifier, base_scored, text_set)


def assemble_metrics(
    inputs: EvalInputs,
    scores: Scores,
    split_emb: EmbeddedSplit,
    *,
    data: str | Path,
    split: str | None,
    calibrate_on: str | None,
) -> dict[str, Any]:
    """metrics.json: the headline's metrics, then the evaluation's context, then the other scores
    (key order is the file's layout, so it is kept)."""
    source, head = inputs.source, scores.scored[0]
    metrics: dict[str, Any] = dict(head.metrics)
    metrics.update(
        classes=inputs.classes,
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
    if source.run_dir is not None and (training := training_summary(source.config)) is not None:
        metrics["training"] = training
    if calibrate_on:  # then the headline was calibrated (embed_inputs embedded that split)
        metrics["calibration"] = {**metrics["calibration"], "split": calibrate_on}
    sources = source_of(inputs.found, split_emb.paths)
    if sources is not None:
        preds = head.probs.argmax(axis=1)
        metrics["per_source"] = per_source_metrics(split_emb.labels, preds, sources, inputs.classes)
    if len(scores.scored) > 1:
        metrics["by_description_set"] = {s.name: s.metrics for s in scores.scored}
    if scores.by_classifier is not None:
        metrics["by_classifier"] = scores.by_classifier
    if scores.baseline:
        metrics["baseline"] = {"model": source.start_spec, **scores.baseline[0].metrics}
    return metrics


# Everything an evaluation writes into --out; a folder holding anything else is not replaced.
EVALUATION_FILES = (
    "metrics.json",
    "predictions.csv",
    "report.md",
    "report.html",
    "figures/",
    "figures/*.png",
)


def write_outputs(
    stage: Path,
    metrics: dict[str, Any],
    scores: Scores,
    split_emb: EmbeddedSplit,
    source: ModelSource,
    figures: bool,
    found: Any = None,
) -> None:
    """metrics.json, predictions.csv and (with ``figures``) the figures and report, into ``stage``."""
    atomic_write_json(stage / "metrics.json", metrics)
    sources = source_of(found, split_emb.paths) if found is not None else None
    write_predictions(stage / "predictions.csv", split_emb, scores.scored[0].probs, sources)
    if figures:
        from fungalzsl.eval.report import write_report

        write_report(stage, split_emb, scores.scored, scores.baseline, source)


def source_of(found: Any, paths: Sequence[Path]) -> list[str | None] | None:
    """The source of each evaluated image (in ``paths`` order), or None when the data names none."""
    if found.sources is None or all(s is None for s in found.sources):
        return None
    by_path = dict(zip(found.paths, found.sources))
    return [by_path.get(p) for p in paths]


def record_evaluation(run_dir: Path, out: Path, metrics: dict[str, Any], classifier: str) -> None:
    """Append the evaluation to RUN/evaluations.jsonl (what ``fungalzsl table RUN`` reads). Best
    effort: the evaluation is complete in ``out`` already, so a run folder that cannot be written
    (read-only, or another user's) costs a warning, not the result."""
    index = run_dir / EVALUATIONS_FILE
    line = {
        "out": str(out.resolve()),
        "split": metrics["split"],
        "data": str(Path(metrics["data"]).resolve()),  # table matches it from any working directory
        "classifier": classifier,
        "descriptions": metrics.get("descriptions"),
        "recall@1": metrics["recall@1"],
        "created_at": metrics["created_at"],
    }
    try:
        append_jsonl(index, [line])
    except (OSError, UnicodeDecodeError, FungalError) as e:  # FungalError: not a regular file
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        print(
            f"warning: could not record this evaluation in {index} ({reason}); 'fungalzsl table "
            f"{run_dir}' will not list it",
            file=sys.stderr,
        )


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
    cache_texts: bool = True,
    text_store: TextStore | None = None,
    image_store: ImageStore | None = None,
    stack_budget: float | None = None,
    blend_weight: float = BLEND_WEIGHT,
) -> dict[str, Any]:
    """Evaluate a run directory, a model spec (``lite``, ``openclip:...``) or a model object on a split.

    Without ``descriptions`` a run's stored class embeddings are used (``mean`` classifier) or its
    training description set; with several, each is scored and the first is the headline.
    ``also_classifiers`` are scored too, on the same image embeddings and the headline description set
    (``metrics["by_classifier"]``), e.g. ``("template", "waffle")``: the controls for whether the
    descriptions help. ``calibrate_on`` (e.g. ``"val"``) refits the temperature on that split of the
    same data before scoring (temperature scaling; the baseline keeps its own). ``record`` appends the
    evaluation to RUN/evaluations.jsonl (for ``table``); protocols that score a run on other data turn
    it off. ``cache_texts`` embeds each distinct text once per text tower (fungalzsl.eval.textcache);
    False re-embeds them for every classifier, as before the cache (and the start model runs its own
    image backbone). ``text_store`` / ``image_store``: stores to share with other evaluations of the
    same models (``fungalzsl run`` shares them between the synthetic test and the real set); by
    default each evaluation has its own. ``stack_budget`` (e.g. 0.05) applies calibrated stacking
    (fungalzsl.eval.gzsl): the run's trained classes' scores are lowered by the shift that moves at
    most that share of the run's own validation images to an untrained class (``metrics["stacking"]``).
    ``blend_weight`` is ``classifier='blend'``'s weight on the attribute scores (eval.attributes).
    Returns the metrics dict that is also written to ``out/metrics.json``.

    ``out`` is written whole or not at all (fungalzsl.outdir.staged_dir): a killed evaluation leaves
    the previous one in place, and a folder holding other files is refused."""
    if "," in classifier:  # 'mean,template,waffle' from a config file, as on the command line
        first, *rest = [c.strip() for c in classifier.split(",") if c.strip()]
        classifier, also_classifiers = first, [*rest, *also_classifiers]
    blend_weight = check_blend_weight(blend_weight)
    out = Path(out)
    with staged_dir(out, EVALUATION_FILES, "an evaluation") as stage:
        inputs = load_inputs(run_or_spec, data, split, descriptions, images, classifier, device)
        if template == DEFAULT_TEMPLATE:  # the model's own where its authors use one (bioclip)
            template = getattr(inputs.source.model, "text_template", None) or template
        if cache_texts:
            text_store = text_store if text_store is not None else TextStore()
            image_store = image_store if image_store is not None else ImageStore()
        else:
            text_store = image_store = None
        split_emb, cal_split = embed_inputs(
            inputs, data, split, images, calibrate_on, batch_size, image_store
        )
        stacking = None if stack_budget is None else stacking_inputs(inputs, stack_budget, batch_size)
        kw = dict(
            classifier=classifier,
            n_boot=n_boot,
            seed=seed,
            hierarchy=hierarchy,
            template=template,
            max_retrieval_texts=max_retrieval_texts,
            blend_weight=blend_weight,
        )
        scores = classify(
            inputs,
            split_emb,
            cal_split,
            classifier=classifier,
            also_classifiers=also_classifiers,
            baseline=baseline,
            batch_size=batch_size,
            device=device,
            kw=kw,
            store=text_store,
            image_store=image_store,
            stacking=stacking,
        )
        metrics = assemble_metrics(
            inputs, scores, split_emb, data=data, split=split, calibrate_on=calibrate_on
        )
        write_outputs(stage, metrics, scores, split_emb, inputs.source, figures, inputs.found)
    if record and inputs.source.run_dir is not None:
        record_evaluation(inputs.source.run_dir, out, metrics, classifier)
    return metrics


def build_start_model(source: ModelSource) -> Any:
    """The weights fine-tuning started from: the same spec and backend options, and the training seed
    set first, so heads that training initialised at random (``lite``) are the same random heads."""
    from fungalzsl.models import build_model

    options = dict(source.config.get("model_options") or {})
    seed = (source.config.get("train") or {}).get("seed")
    if isinstance(seed, int):
        torch.manual_seed(seed)
    with step(f"starting the zero-shot start model {source.start_spec}", now=True):
        return build_model(source.start_spec, **options)


def write_predictions(
    path: Path, split: EmbeddedSplit, probs: np.ndarray, sources: Sequence[str | None] | None = None
) -> None:
    """One row per image: path, true and predicted class, correctness, confidence, one column per class;
    a ``source`` column after the path when the data names its images' sources."""
    buf = io.StringIO()
    w = csv.writer(buf)
    src = ["source"] if sources is not None else []
    w.writerow(
        ["path", *src, "true", "prediction", "correct", "confidence", *(f"p_{c}" for c in split.classes)]
    )
    pred = probs.argmax(axis=1)
    for i, (p, y, k, row) in enumerate(zip(split.paths, split.labels, pred, probs)):
        w.writerow(
            [
                str(p),
                *([sources[i] or ""] if sources is not None else []),
                split.classes[y],
                split.classes[k],
                int(y == k),
                f"{row[k]:.6f}",
                *(f"{v:.6f}" for v in row),
            ]
        )
    atomic_write_text(path, buf.getvalue())


__all__ = ["EmbeddedSplit", "ModelSource", "Scored", "embed_split", "evaluate_run", "score_set", "score_sets"]
