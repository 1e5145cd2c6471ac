"""Labelled real images from a lab (shots for ``fungalzsl adapt``, data for ``fungalzsl fewshot`` and for
evaluating on real photographs), read under one rule from either of two layouts:

* **class folders**: ``ROOT/<class>/*.png`` (any of :data:`fungalzsl.images.IMAGE_EXTENSIONS`). Images
  directly in a class folder get ``source = "folder"``; images in a sub-folder ``ROOT/<class>/<name>/...``
  get ``source = <name>`` (e.g. ``ROOT/spore/microscope-A/x.png``), so a lab can keep per-instrument or
  per-source folders and see results per source;
* **a flat folder with ``labels.jsonl``** (as ``data/real-dev/``): one JSON object a line with ``file``
  (a path relative to ROOT), ``label`` and an optional ``source`` (default ``"labels"``); other fields are
  kept out of the way. When ``labels.jsonl`` exists it is the whole truth: the folders are not read.

The safe path rule (as for the release split files, :mod:`fungalzsl.release_split`): every path part of
``file`` is a plain name (no ``..``, no absolute path, no hidden name) and the image, symlinks resolved,
lies under ROOT; in the class-folder layout an image reached through a link that leaves ROOT is refused.

One-line errors (:class:`fungalzsl.errors.FungalError`), before anything is written: ROOT missing, a class
folder missing or empty, a folder or label that is not one of ``classes``, a file listed twice or missing,
an image that cannot be read (each is decoded once here)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fungalzsl.errors import fail
from fungalzsl.images import IMAGE_EXTENSIONS, ImageReadError, is_image_file, load_image
from fungalzsl.io import is_inside, name_problem, read_text_file

LABELS_FILE = "labels.jsonl"
FOLDER_SOURCE = "folder"  # images directly in ROOT/<class>/
LABELS_SOURCE = "labels"  # labels.jsonl records without a "source"


@dataclass(frozen=True)
class LabelledImage:
    """One labelled image: where it is, its class name and where it came from (for per-source results)."""

    path: Path
    label: str
    source: str


def read_labelled(
    root: str | Path, classes: Sequence[str] | None = None, *, require_every_class: bool = True
) -> list[LabelledImage]:
    """The labelled images under ``root`` (layouts and rules in the module docstring).

    ``classes`` is the run's class list: every folder or label must be one of them and, with
    ``require_every_class``, every class must have at least one image. Without ``classes`` the classes
    are whatever the folders or labels name. Order: ``labels.jsonl`` order, else class order (``classes``
    or sorted folder names) then sorted paths."""
    root = Path(root)
    if not root.is_dir():
        raise fail(
            f"labelled image folder {root} does not exist",
            "give a folder of class folders or with labels.jsonl",
        )
    items = _from_labels_file(root) if (root / LABELS_FILE).exists() else _from_class_folders(root, classes)
    if not items:
        raise fail(
            f"no labelled images found under {root}", f"expected ROOT/<class>/*.png or ROOT/{LABELS_FILE}"
        )
    _check_classes(root, items, classes, require_every_class)
    for item in items:
        _check_readable(item.path)
    return items


def _from_class_folders(root: Path, classes: Sequence[str] | None) -> list[LabelledImage]:
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and is_image_file(p))
    if loose:
        raise fail(
            f"{root} holds images outside any class folder ({', '.join(loose[:3])}"
            f"{', ...' if len(loose) > 3 else ''})",
            f"move each into ROOT/<class>/, or list them in ROOT/{LABELS_FILE}",
        )
    order = [c for c in classes if c in folders] if classes else folders
    order += [f for f in folders if f not in order]  # unknown folders: reported by _check_classes
    items: list[LabelledImage] = []
    for name in order:
        folder = root / name
        found = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))
        if not found:
            raise fail(
                f"class folder {folder} holds no images ({', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)})",
                "add a few labelled images of that class, or remove the folder",
            )
        for p in found:
            if not is_inside(p, root):
                raise fail(
                    f"{p} is a link to {p.resolve()}, outside {root}",
                    "copy the image into the folder instead of linking it",
                )
            rel = p.relative_to(folder).parts
            items.append(LabelledImage(p, name, rel[0] if len(rel) > 1 else FOLDER_SOURCE))
    return items


def _from_labels_file(root: Path) -> list[LabelledImage]:
    path = root / LABELS_FILE
    items: list[LabelledImage] = []
    seen: set[Path] = set()
    for i, line in enumerate(read_text_file(path, "labels file").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{i}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise fail(f"{where} is not valid JSON ({e.msg})", "fix or delete that line") from None
        if not isinstance(rec, dict):
            raise fail(f"{where} is not a JSON object", 'each line is {"file": "x.png", "label": "spore"}')
        for key in ("file", "label"):
            if not isinstance(rec.get(key), str) or not rec[key].strip():
                raise fail(
                    f"{where} has no '{key}' string", 'each line is {"file": "x.png", "label": "spore"}'
                )
        source = rec.get("source", LABELS_SOURCE)
        if not isinstance(source, str) or not source:
            raise fail(f"{where}: 'source' must be a non-empty string", "fix or remove the field")
        image = _safe_file(root, rec["file"], where)
        if image in seen:
            raise fail(f"{where} lists {rec['file']!r} a second time", "keep one line per image")
        seen.add(image)
        items.append(LabelledImage(image, rec["label"], source))
    return items


def _safe_file(root: Path, file: str, where: str) -> Path:
    """``root/file`` under the safe path rule, and it must be an existing image file."""
    parts = PurePosixPath(file.replace("\\", "/")).parts
    bad = next((p for p in parts if name_problem(p) is not None), None) if parts else file
    if bad is not None or PurePosixPath(file).is_absolute():
        raise fail(
            f"{where}: file {file!r} is not a path inside the folder ({name_problem(bad) or 'absolute path'})",
            "give the image's path relative to the folder, without '..'",
        )
    image = root.joinpath(*parts)
    if not image.is_file():
        raise fail(f"{where}: image {file!r} is not in {root}", "check the file name or add the image")
    if not is_inside(image, root):
        raise fail(
            f"{where}: {file!r} is a link to {image.resolve()}, outside {root}",
            "copy the image into the folder instead of linking it",
        )
    return image


def _check_classes(
    root: Path, items: list[LabelledImage], classes: Sequence[str] | None, require_every_class: bool
) -> None:
    if classes is None:
        return
    counts = Counter(item.label for item in items)
    unknown = [c for c in counts if c not in classes]
    if unknown:
        raise fail(
            f"{root}: {', '.join(map(repr, unknown))} not among the run's classes ({', '.join(classes)})",
            "rename the folders or labels to the run's class names, or remove those images",
        )
    missing = [c for c in classes if c not in counts]
    if missing and require_every_class:
        raise fail(
            f"{root} has no images of class {', '.join(map(repr, missing))} (a class folder is missing)",
            f"add ROOT/<class>/ with a few images for every class ({', '.join(classes)})",
        )


def _check_readable(path: Path) -> None:
    """Decode it once (the rule of :func:`fungalzsl.images.load_image`): a file that is not an image, a
    truncated one or one over the size guard is refused by name here, not half-way through a command."""
    try:
        load_image(path)
    except ImageReadError as e:
        raise fail(str(e), "remove or replace the file") from None


def class_counts(items: Sequence[LabelledImage]) -> dict[str, int]:
    """Images per class, in first-seen order."""
    return dict(Counter(item.label for item in items))


__all__ = ["LABELS_FILE", "LabelledImage", "class_counts", "read_labelled"]
