"""Reading a labelled folder of real images: class folders (``ROOT/CLASS/*.png``) or a flat folder with
``labels.jsonl`` (one object a line: ``file``, ``label``, optional ``source``), as ``data/real-dev/``.

Minimal reader with the interface the few-shot work shares (``read_labelled``); the source of an
image (which repository, lab or microscope it came from) travels with it so results can be split by
source."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fungalzsl.errors import fail
from fungalzsl.images import is_image_file
from fungalzsl.io import read_jsonl, safe_child

LABELS_FILE = "labels.jsonl"


@dataclass(frozen=True)
class LabelledImage:
    """One labelled image; ``source`` is None when the folder does not say where it came from."""

    path: Path
    label: str
    source: str | None = None


def read_labelled(root: str | Path, classes: Sequence[str] | None = None) -> list[LabelledImage]:
    """The labelled images under ``root``: ``root/labels.jsonl`` when present, else class folders.

    ``classes`` (optional) is the list of known classes: a label outside it is a one-line error."""
    root = Path(root)
    if not root.is_dir():
        raise fail(f"labelled folder {root} does not exist", "check the --data path")
    items = _from_labels(root) if (root / LABELS_FILE).is_file() else _from_folders(root)
    if not items:
        raise fail(f"no labelled images under {root}", f"use class folders ROOT/CLASS/*.png or {LABELS_FILE}")
    if classes is not None:
        unknown = sorted({i.label for i in items} - set(classes))
        if unknown:
            raise fail(
                f"{root} has label(s) not among the classes: {', '.join(unknown)}",
                f"known classes: {', '.join(classes)}",
            )
    return items


def _from_labels(root: Path) -> list[LabelledImage]:
    labels = root / LABELS_FILE
    out: list[LabelledImage] = []
    for n, rec in enumerate(read_jsonl(labels), 1):
        name, label, source = rec.get("file"), rec.get("label"), rec.get("source")
        if not isinstance(name, str) or not isinstance(label, str) or not label:
            raise fail(f"{labels}:{n} needs text fields 'file' and 'label'", "fix that line")
        if source is not None and not isinstance(source, str):
            raise fail(f"{labels}:{n}: 'source' must be text", "fix that line")
        path = safe_child(root, *Path(name).parts, what="image file", root_label="the labelled folder")
        if not path.is_file():
            raise fail(f"{labels}:{n}: {name} is not a file under {root}", "fix the line or add the image")
        out.append(LabelledImage(path, label, source or None))
    return out


def _from_folders(root: Path) -> list[LabelledImage]:
    out: list[LabelledImage] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out += [
            LabelledImage(p, folder.name)
            for p in sorted(folder.rglob("*"))
            if p.is_file() and is_image_file(p)
        ]
    return out
