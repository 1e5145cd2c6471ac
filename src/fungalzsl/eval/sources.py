"""Where evaluation images and models come from: ImageFolder trees, the authors' release split files,
run directories and bare model specs — all turned into (paths, labels, classes) and a model."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fungalzsl.errors import FungalError, fail
from fungalzsl.images import ImageSet, list_split, read_classes
from fungalzsl.labelled import LABELS_FILE, read_labelled
from fungalzsl.progress import step
from fungalzsl.release_split import find_images, read_split_file
from fungalzsl.rundir import resolve_run_dir


def load_release_split(json_path: str | Path, images: str | Path | None) -> ImageSet:
    """Read an authors' release split file (``test_data.json``: records with ``image_path`` and
    ``class_label``) and find each image under ``images``.

    The released paths are absolute paths on the authors' machine (``/Dataset/test/spore_747.png``);
    :mod:`fungalzsl.release_split` reads the file and finds the images with the same rule (and the same
    checks) as ``generate import-fungalzsl``: IMAGES/Dataset/test/spore_747.png, IMAGES/test/...,
    IMAGES/spore_747.png, else a file of that name that is unique under IMAGES."""
    json_path = Path(json_path)
    if images is None:
        raise fail(
            f"{json_path} lists image paths from the authors' machine",
            "pass --images DIR pointing at the unpacked release images (dataset.zip)",
        )
    root = Path(images)
    if not root.is_dir():
        raise fail(f"images directory {root} does not exist", "pass --images with the unpacked dataset.zip")
    split = read_split_file(json_path)
    classes: list[str] = []
    paths: list[Path] = []
    labels: list[int] = []
    found = find_images(split, root)
    for r, p in zip(split.records, found):
        if p is None:
            continue
        c = r["class_label"]
        if c not in classes:
            classes.append(c)
        paths.append(p)
        labels.append(classes.index(c))
    records, missing = split.records, len(split.records) - len(paths)
    if not paths:
        raise fail(
            f"none of the {len(records)} images of {json_path.name} were found under {root}",
            "point --images at the folder that holds train/ val/ test/",
        )
    if missing:
        # Partial image folders are common (a user unzipped one split); say so, but evaluate the rest.
        import warnings

        warnings.warn(
            f"{missing} of {len(records)} images listed in {json_path.name} not found", stacklevel=2
        )
    return ImageSet(paths=paths, labels=labels, classes=classes)


def load_labelled_set(root: Path) -> ImageSet:
    """A labelled folder (``labels.jsonl`` with sources, or class folders) as an ImageSet, classes in
    the order they first occur (``align_labels`` puts them in the classifier's order)."""
    items = read_labelled(root)
    classes = list(dict.fromkeys(i.label for i in items))
    return ImageSet(
        paths=[i.path for i in items],
        labels=[classes.index(i.label) for i in items],
        classes=classes,
        sources=[i.source for i in items],
    )


# --split values that mean "the whole folder, no split": what evaluate records for such an evaluation
NO_SPLIT = (None, "", "none", ".")


def load_eval_images(
    data: str | Path, split: str | None = "test", images: str | Path | None = None
) -> ImageSet:
    """Images to evaluate: a dataset dir (``DIR/split/class/*``), a folder of class folders
    (``--split none``), a labelled folder with ``labels.jsonl`` (``data/real-dev``: read whatever
    ``--split`` says when it has no such split folder), or a release ``*_data.json`` file with ``images``."""
    p = Path(data)
    if p.suffix.lower() == ".json":
        if not p.is_file():
            raise fail(f"{p} does not exist", "check the --data path")
        return load_release_split(p, images)
    if images is not None:
        raise fail("--images is only used with a release *_data.json file", "drop --images or pass a .json")
    if p.is_file():
        raise fail(f"{p} is a file, not a dataset directory", "pass DIR with SPLIT/CLASS/* or a *_data.json")
    no_split = split in NO_SPLIT
    if (p / LABELS_FILE).is_file() and (no_split or not (p / str(split)).is_dir()):
        return load_labelled_set(p)
    return list_split(p, None if split in NO_SPLIT else split)


def align_labels(images: ImageSet, classes: list[str]) -> ImageSet:
    """Re-index ``images`` onto ``classes`` (the classifier's order); unknown data classes are an error."""
    unknown = sorted(set(images.classes) - set(classes))
    if unknown:
        raise fail(
            f"the data has class(es) the classifier does not know: {', '.join(unknown)}",
            f"pass --descriptions covering them (known: {', '.join(classes)})",
        )
    labels = [classes.index(images.classes[i]) for i in images.labels]
    return ImageSet(paths=images.paths, labels=labels, classes=list(classes), sources=images.sources)


def dataset_classes(data: str | Path, images: ImageSet, prefer: list[str] | None = None) -> list[str]:
    """The class order to report in: the manifest's, else ``prefer`` (the run's classes), else the
    order the reader found them in."""
    p = Path(data)
    order = (read_classes(p) if p.is_dir() else None) or prefer
    present = set(images.classes[i] for i in set(images.labels))
    if order:
        return [c for c in order if c in present] + [
            c for c in images.classes if c in present and c not in order
        ]
    return [c for c in images.classes if c in present]


@dataclass
class ModelSource:
    """A model to evaluate plus what we know about where it came from."""

    model: Any
    label: str
    run_dir: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)
    spec: str | None = None
    adapter: Any = None  # a run written by ``fungalzsl adapt``: its fewshot.adapter.Adapter

    @property
    def start_spec(self) -> str | None:
        """The spec of the weights fine-tuning started from (the zero-shot baseline), if known."""
        if self.run_dir is None:
            return None
        m = self.config.get("model")
        if isinstance(m, dict):
            m = m.get("spec") or m.get("name")
        return m if isinstance(m, str) else None


def load_source(run_or_spec: Any, device: str = "cpu") -> ModelSource:
    """A run directory (``fungalzsl.models.load_run``), a model spec (``build_model``) or a model object."""
    if hasattr(run_or_spec, "encode_image"):
        return ModelSource(model=run_or_spec.eval(), label=type(run_or_spec).__name__)
    text = str(run_or_spec)
    path = Path(text)
    if path.exists():  # a run, the output folder of `fungalzsl run`, or a one-line error saying what it is
        from fungalzsl.fewshot.adapter import load_adapter
        from fungalzsl.models import load_run

        run = resolve_run_dir(path, "evaluate")
        with step(f"loading run {run}", now=True):
            model, config = load_run(run)
        source = ModelSource(model=model.to(device).eval(), label=path.name, run_dir=run, config=config)
        source.adapter = load_adapter(run)
        return source
    from fungalzsl.models import build_model

    with step(f"starting model {text}", now=True):
        model = build_model(text)
    return ModelSource(model=model.to(device).eval(), label=text, spec=text)


def training_description_path(source: ModelSource) -> Path | None:
    """The description set a run was trained with, as recorded in RUN/config.json, if it is still on
    disk *unchanged*: a file edited or regrown since training (its content hash differs from the one
    recorded) is not the training set any more, so it is not used in its name."""
    cfg = source.config
    if source.run_dir is None:
        return None
    cand: list[Any] = []
    d = cfg.get("descriptions")
    if isinstance(d, dict):
        cand += [d.get("path"), d.get("file")]
    elif isinstance(d, str):
        cand.append(d)
    cand += [cfg.get("descriptions_path"), (cfg.get("train") or {}).get("descriptions")]
    recorded = (d.get("hash") if isinstance(d, dict) else None) or cfg.get("descriptions_hash")
    for c in cand:
        if isinstance(c, str) and c:
            p = Path(c)
            for q in (p, source.run_dir / p):
                if q.is_file():
                    if recorded and _content_hash(q) != recorded:
                        print(f"warning: {q} changed since {source.run_dir} was trained; not using it as "
                              "the training set (pass --descriptions to use it anyway)", file=sys.stderr)  # fmt: skip
                        return None
                    return q
    return None


def _content_hash(path: Path) -> str | None:
    from fungalzsl.text.records import load_description_set

    try:
        return load_description_set(path).hash
    except FungalError:
        return None


def stored_class_embeddings(source: ModelSource) -> tuple[list[str], Any] | None:
    """(classes, (C, D) tensor) from RUN/class_embeddings.safetensors, if the run has them."""
    if source.run_dir is None:
        return None
    from fungalzsl.predict.zeroshot import load_class_embeddings
    from fungalzsl.rundir import CLASS_EMBEDDINGS_FILE

    stored = load_class_embeddings(source.run_dir / CLASS_EMBEDDINGS_FILE, source.config.get("classes"))
    if stored is None or len(stored[0]) != stored[1].shape[0]:
        return None  # unusable: the caller embeds the training descriptions instead
    return stored
