"""The authors' release split files (``{train,val,test}_data.json``), read the same way by every command.

The release (github.com/Anjuyaduvanshi/Fungi-Dataset) ships JSON lists of ``{"image_path":
"/Dataset/<split>/<class>_<n>.png", "class_label", "description", "temperature"}``; the images are
downloaded separately (Mendeley Data). ``generate import-fungalzsl`` and ``evaluate --data
test_data.json`` both read them here, under one rule, because the records are data from elsewhere
and their strings end up in file names:

* ``class_label`` and the image's file name must be plain names (:func:`fungalzsl.io.plain_name`):
  they become ``OUT/<split>/<class_label>/<file name>``; ``image_path`` may not contain ``..``;
* an image is looked up under ``--images`` by the path's trailing parts, longest first
  (``/Dataset/test/x.png`` → ``IMAGES/Dataset/test/x.png``, ``IMAGES/test/x.png``, ``IMAGES/x.png``),
  else by a file name that is unique under ``--images`` (the record's folder name breaks ties);
* what is found must still lie under ``--images`` once symlinks are resolved.

Any record breaking the rule stops the command with a one-line error naming the file and the record,
before anything is written."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fungalzsl.errors import fail
from fungalzsl.io import is_inside, plain_name

SPLITS = ("train", "val", "test")
_REQUIRED = ("image_path", "class_label")
_NAME_FIX = "class labels and image file names must be single names (no '/', '\\', '..' or leading '.'); fix the record"


@dataclass
class ReleaseSplit:
    """One split file: its split name (train/val/test) and its checked records."""

    path: Path
    name: str
    records: list[dict[str, Any]]

    def where(self, i: int) -> str:
        return f"{self.path}: record {i}"


def image_parts(image_path: str) -> tuple[str, ...]:
    """The folder and file names of a released path, without the root: ``('Dataset', 'test', 'x.png')``."""
    return tuple(p for p in PurePosixPath(image_path).parts if p != "/")


def _check_record(path: Path, i: int, r: Any) -> None:
    if not isinstance(r, dict) or any(not isinstance(r.get(k), str) or not r.get(k) for k in _REQUIRED):
        raise fail(
            f"{path}: record {i} lacks 'image_path' or 'class_label'",
            "is this a FungalZSL release split file?",
        )
    plain_name(r["class_label"], f"{path}: record {i} class_label", _NAME_FIX)
    parts = image_parts(r["image_path"])
    if ".." in parts:
        raise fail(
            f"{path}: record {i} image_path {r['image_path']!r} climbs out of its folder ('..')",
            "released paths never contain '..'; fix or remove the record",
        )
    plain_name(parts[-1] if parts else "", f"{path}: record {i} image_path file name", _NAME_FIX)


def read_split_file(path: str | Path) -> ReleaseSplit:
    """Read and check one release JSON file; one-line errors for bad files and bad records.

    The split name is the file's (``train_data.json`` → ``train``), else the one folder all records
    share (``/Dataset/val/...`` → ``val``), else the file's stem."""
    path = Path(path)
    if not path.is_file():
        raise fail(
            f"split file {path} does not exist",
            "pass the release's train_data.json, val_data.json, test_data.json",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise fail(
            f"{path} is not valid JSON ({str(e).splitlines()[0]})", "re-download the release file"
        ) from None
    if not isinstance(data, list):
        raise fail(f"{path} must hold a JSON list of records", "is this a FungalZSL release split file?")
    for i, r in enumerate(data):
        _check_record(path, i, r)
    stem = path.stem.removesuffix("_data")
    parents = {PurePosixPath(r["image_path"]).parent.name for r in data} - {""}
    name = stem if stem in SPLITS else (parents.pop() if len(parents) == 1 else stem)
    plain_name(name, f"{path}: split name", "name the file train_data.json, val_data.json or test_data.json")
    return ReleaseSplit(path=path, name=name, records=data)


class ImageFinder:
    """Locate released image paths under the user's image folder (the rule in the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._by_name: dict[str, list[Path]] | None = None

    def find(self, image_path: str, where: str = "record") -> Path | None:
        """The image file under ``root`` for ``image_path`` (not resolved: as the user sees it), None if
        there is none; a one-line error if it is reached through a symlink that leaves ``root``."""
        parts = image_parts(image_path)
        for k in range(len(parts)):
            cand = self.root.joinpath(*parts[k:])
            if cand.is_file():
                return self._inside(cand, image_path, where)
        if self._by_name is None:
            self._by_name = {}
            for p in self.root.rglob("*"):
                if p.is_file():
                    self._by_name.setdefault(p.name, []).append(p)
        hits = self._by_name.get(parts[-1], []) if parts else []
        if len(hits) > 1 and len(parts) > 1:
            hits = [h for h in hits if parts[-2] in h.relative_to(self.root).parts]
        return self._inside(hits[0], image_path, where) if len(hits) == 1 else None

    def _inside(self, found: Path, image_path: str, where: str) -> Path:
        if not is_inside(found, self.root):
            raise fail(
                f"{where}: image_path {image_path!r} is {found}, a link to {found.resolve()} outside "
                f"--images {self.root}",
                "copy the image into the --images folder instead of linking it",
            )
        return found


def find_images(
    split: ReleaseSplit, images: str | Path, finder: ImageFinder | None = None
) -> list[Path | None]:
    """The image of every record of ``split`` under ``images`` (None where it is missing)."""
    finder = finder or ImageFinder(images)
    return [finder.find(r["image_path"], split.where(i)) for i, r in enumerate(split.records)]
