"""Where evaluation images and models come from: ImageFolder trees, the authors' release split files,
run directories and bare model specs — all turned into (paths, labels, classes) and a model."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fungalzsl.data import ImageSet, list_split, read_classes
from fungalzsl.errors import FungalError, fail


def load_release_split(json_path: str | Path, images: str | Path | None) -> ImageSet:
    """Read an authors' release split file (``test_data.json``: records with ``image_path`` and
    ``class_label``) and find each image under ``images``.

    The released paths are absolute paths on the authors' machine (``/Dataset/test/spore_747.png``), so
    we look for, in order: IMAGES/<path without its first folder>, IMAGES/<full relative path>,
    IMAGES/<split folder>/<name>, IMAGES/<name>."""
    json_path = Path(json_path)
    if images is None:
        raise fail(
            f"{json_path} lists image paths from the authors' machine",
            "pass --images DIR pointing at the unpacked release images (dataset.zip)",
        )
    root = Path(images)
    if not root.is_dir():
        raise fail(f"images directory {root} does not exist", "pass --images with the unpacked dataset.zip")
    try:
        records = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise fail(f"cannot read {json_path} as JSON ({e})", "give a release *_data.json file") from None
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and "image_path" in r and "class_label" in r for r in records
    ):
        raise fail(f"{json_path} is not a release split file", "expected a list of {image_path, class_label}")
    classes: list[str] = []
    paths: list[Path] = []
    labels: list[int] = []
    missing = 0
    for r in records:
        rel = Path(str(r["image_path"]).lstrip("/"))
        candidates = [root / Path(*rel.parts[1:]), root / rel, root / Path(*rel.parts[-2:]), root / rel.name]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            missing += 1
            continue
        c = str(r["class_label"])
        if c not in classes:
            classes.append(c)
        paths.append(found)
        labels.append(classes.index(c))
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


def load_eval_images(
    data: str | Path, split: str | None = "test", images: str | Path | None = None
) -> ImageSet:
    """Images to evaluate: a dataset dir (``DIR/split/class/*``), a folder of class folders
    (``--split none``), or a release ``*_data.json`` file with ``images``."""
    p = Path(data)
    if p.suffix.lower() == ".json":
        if not p.is_file():
            raise fail(f"{p} does not exist", "check the --data path")
        return load_release_split(p, images)
    if images is not None:
        raise fail("--images is only used with a release *_data.json file", "drop --images or pass a .json")
    if p.is_file():
        raise fail(f"{p} is a file, not a dataset directory", "pass DIR with SPLIT/CLASS/* or a *_data.json")
    return list_split(p, split if split not in (None, "", "none", ".") else None)


def align_labels(images: ImageSet, classes: list[str]) -> ImageSet:
    """Re-index ``images`` onto ``classes`` (the classifier's order); unknown data classes are an error."""
    unknown = sorted(set(images.classes) - set(classes))
    if unknown:
        raise fail(
            f"the data has class(es) the classifier does not know: {', '.join(unknown)}",
            f"pass --descriptions covering them (known: {', '.join(classes)})",
        )
    labels = [classes.index(images.classes[i]) for i in images.labels]
    return ImageSet(paths=images.paths, labels=labels, classes=list(classes))


def dataset_classes(data: str | Path, images: ImageSet) -> list[str]:
    """The class order to report in: the manifest's, else the order the reader found them in."""
    p = Path(data)
    order = read_classes(p) if p.is_dir() else None
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

    @property
    def start_spec(self) -> str | None:
        """The spec of the weights fine-tuning started from (the zero-shot baseline), if known."""
        if self.run_dir is None:
            return None
        m = self.config.get("model")
        if isinstance(m, dict):
            m = m.get("spec") or m.get("name")
        return m if isinstance(m, str) else None


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def load_source(run_or_spec: Any, device: str = "cpu") -> ModelSource:
    """A run directory (``fungalzsl.models.load_run``), a model spec (``build_model``) or a model object."""
    if hasattr(run_or_spec, "encode_image"):
        return ModelSource(model=run_or_spec.eval(), label=type(run_or_spec).__name__)
    text = str(run_or_spec)
    path = Path(text)
    if is_run_dir(path):
        from fungalzsl.models import load_run

        model, config = load_run(path)
        return ModelSource(model=model.to(device).eval(), label=path.name, run_dir=path, config=config)
    if path.exists():
        raise fail(
            f"{path} is not a run directory (no config.json)",
            "pass a directory written by 'fungalzsl train', or a model spec such as 'lite'",
        )
    from fungalzsl.models import build_model

    return ModelSource(model=build_model(text).to(device).eval(), label=text, spec=text)


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
    f = source.run_dir / "class_embeddings.safetensors"
    if not f.is_file():
        return None
    from fungalzsl.tensorfile import load_tensors

    tensors = load_tensors(f, "class embeddings")
    emb = tensors.get("embeddings")
    if emb is None and len(tensors) == 1:
        emb = next(iter(tensors.values()))
    classes = source.config.get("classes")
    if emb is None or not isinstance(classes, list) or len(classes) != emb.shape[0]:
        return None
    return [c if isinstance(c, str) else c["name"] for c in classes], emb
