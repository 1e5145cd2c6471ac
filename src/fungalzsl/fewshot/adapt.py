"""``fungalzsl adapt RUN --shots DIR --out OUT``: fit a few-shot adapter on a lab's labelled images and
write OUT as a run directory that every command accepts (predict, evaluate, serve, ``Classifier.load``).

OUT holds the base run's files (hard links where the file system allows, else copies; not its ``last/``
resume state nor its ``evaluations.jsonl``), its ``config.json`` with ``adapted_from`` and ``adapter``
added, and ``adapter.json`` + ``adapter.safetensors`` (:mod:`fungalzsl.fewshot.adapter`). OUT is written
whole or not at all (:func:`fungalzsl.outdir.staged_dir`). ``fungalzsl export`` refuses an adapted run
with one line: its ONNX format holds a cosine classifier only."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fungalzsl.errors import fail
from fungalzsl.fewshot.adapter import ADAPTER_METHODS, Adapter, fit_adapter, save_adapter
from fungalzsl.fewshot.features import ViewEmbeddings, check_features, embed_paths
from fungalzsl.io import atomic_write_json
from fungalzsl.labelled import LabelledImage, class_counts, read_labelled
from fungalzsl.outdir import staged_dir
from fungalzsl.rundir import ADAPTER_FILE, ADAPTER_TENSORS_FILE, CONFIG_FILE, EVALUATIONS_FILE, LAST_DIR

# measured best over real-dev + a synthetic micrograph set: docs/fewshot.md
DEFAULT_METHOD = "anchored"
DEFAULT_FEATURES = "embedding"
DEFAULT_VIEWS = 1
_NOT_COPIED = {LAST_DIR, EVALUATIONS_FILE, ADAPTER_FILE, ADAPTER_TENSORS_FILE, CONFIG_FILE}


@dataclass
class EmbeddedShots:
    """Labelled images embedded by one model: (N, D) normalised centre-crop embeddings, (N,) class
    indices, sources, and (when embedded with :func:`embed_labelled`) every feature / view choice."""

    items: list[LabelledImage]
    emb: torch.Tensor
    labels: torch.Tensor
    sources: list[str]
    views: ViewEmbeddings | None = None

    def inputs(self, features: str, views: int) -> torch.Tensor:
        """(N, F) the adapter inputs of ``features`` under ``views`` (:mod:`fungalzsl.fewshot.features`)."""
        if features == "embedding" and views == 1:
            return self.emb
        if self.views is None or self.views.emb.shape[1] < views:
            raise ValueError(f"these images were not embedded with {views} views")
        return self.views.pick(features, views)


def embed_labelled(
    model: Any,
    items: Sequence[LabelledImage],
    classes: Sequence[str],
    what: str,
    batch_size: int = 32,
    views: int = 1,
) -> EmbeddedShots:
    """Embed ``items`` (under ``views`` views) with a progress bar on stderr; an unreadable image is an error."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"[bold]embedding {what}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True,
    ) as prog:  # fmt: skip
        task = prog.add_task(what, total=len(items))
        embedded, _kept, errors = embed_paths(
            model, [i.path for i in items], views, batch_size, progress=lambda n: prog.advance(task, n)
        )
    if errors:
        raise fail(f"{len(errors)} {what} could not be read (first: {errors[0]})", "remove or replace them")
    index = {c: i for i, c in enumerate(classes)}
    return EmbeddedShots(
        list(items),
        embedded.centre(),
        torch.tensor([index[i.label] for i in items], dtype=torch.long),
        [i.source for i in items],
        embedded,
    )


def _link_or_copy(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, copy_function=_link_or_copy_file)
    else:
        _link_or_copy_file(src, dst)


def _link_or_copy_file(src: str | Path, dst: str | Path) -> None:
    # Weights are never rewritten in place (atomic replace makes a new inode), so a hard link is safe.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def run_files(run: Path) -> list[str]:
    """The entries of ``run`` that an adapted copy carries (everything but resume state and history
    of other evaluations), as relative names: the ``owned`` set of the output folder too."""
    return sorted(p.name for p in run.iterdir() if p.name not in _NOT_COPIED and not p.name.startswith("."))


def adapt_run(
    run_dir: str | Path,
    shots: str | Path,
    out: str | Path,
    method: str = DEFAULT_METHOD,
    batch_size: int = 32,
    device: str = "cpu",
    features: str = DEFAULT_FEATURES,
    views: int = DEFAULT_VIEWS,
) -> Adapter:
    """Fit ``method`` on ``features`` (under ``views`` views) of the labelled images in ``shots`` and
    write the adapted run to ``out``."""
    from fungalzsl.predict.classifier import Classifier

    run_dir, shots, out = Path(run_dir), Path(shots), Path(out)
    if method not in ADAPTER_METHODS:
        raise fail(f"unknown --method {method!r}", f"choose one of: {', '.join(ADAPTER_METHODS)}")
    check_features(features, views)
    if method == "anchored" and features == "backbone":
        raise fail(
            "--method anchored needs --features embedding or both (its class text lives in the embedding space)",
            "use --method prototype, probe or tip with --features backbone",
        )
    if out.resolve() == run_dir.resolve():
        raise fail("--out is the run directory itself", "write the adapted run to a new folder")
    clf = Classifier.load(run_dir, device=device)
    if clf.adapter is not None:
        raise fail(
            f"{run_dir} is already adapted", f"adapt the run it came from ({clf.config.get('adapted_from')})"
        )
    items = read_labelled(shots, clf.classes)
    shot_emb = embed_labelled(clf.model, items, clf.classes, "shots", batch_size, views)
    with torch.no_grad():
        zs = clf.scores(shot_emb.emb)
    adapter = fit_adapter(method, shot_emb.inputs(features, views), shot_emb.labels, clf.classes, zs,
                          clf.logit_scale, clf.class_embeddings, features, views)  # fmt: skip
    adapter.info = {
        "adapted_from": str(run_dir.resolve()),
        "shots": str(shots.resolve()),
        "shots_per_class": class_counts(items),
        "sources": sorted(set(shot_emb.sources)),
    }
    files = run_files(run_dir)
    owned = [*files, *(f"{f}/" for f in files), *(f"{f}/*" for f in files)]
    owned += [CONFIG_FILE, EVALUATIONS_FILE, ADAPTER_FILE, ADAPTER_TENSORS_FILE]
    with staged_dir(out, owned, "an adapted run") as stage:
        for name in files:
            _link_or_copy(run_dir / name, stage / name)
        config = dict(clf.config)
        config["adapted_from"] = adapter.info["adapted_from"]
        config["adapter"] = {
            "method": method,
            "features": features,
            "views": views,
            "params": adapter.params,
            "shots_per_class": class_counts(items),
        }
        atomic_write_json(stage / CONFIG_FILE, json.loads(json.dumps(config, default=str)))
        save_adapter(stage, adapter)
    return adapter
