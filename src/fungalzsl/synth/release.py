"""Import the authors' released FungalZSL split files into our dataset layout.

The release (github.com/Anjuyaduvanshi/Fungi-Dataset) ships ``{train,val,test}_data.json``: a JSON
list of ``{"image_path": "/Dataset/<split>/<class>_<n>.png", "class_label", "description",
"temperature"}``; the images themselves are downloaded separately from Mendeley Data. We find each
referenced image under ``--images`` (by the path's trailing parts, else by a unique file name),
check every one before writing anything, then hard-link (or copy) them into
``OUT/<split>/<class>/`` and write metadata and manifest as ``fungalzsl generate`` does."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from fungalzsl.errors import fail
from fungalzsl.io import atomic_write_json, sha256_file
from fungalzsl.synth.layout import prepare_output, split_summary, write_metadata
from fungalzsl.synth.preset import PAPER_CLASSES

_REQUIRED = ("image_path", "class_label")


def read_split_file(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """(split name, records) of one release JSON file, with one-line errors for bad files."""
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
        if not isinstance(r, dict) or any(not isinstance(r.get(k), str) or not r.get(k) for k in _REQUIRED):
            raise fail(
                f"{path}: record {i} lacks 'image_path' or 'class_label'",
                "is this a FungalZSL release split file?",
            )
    stem = path.stem.removesuffix("_data")
    parents = {PurePosixPath(r["image_path"]).parent.name for r in data}
    split = stem if stem in ("train", "val", "test") else (parents.pop() if len(parents) == 1 else stem)
    return split, data


class _Finder:
    """Locate a released image path under the user's image folder."""

    def __init__(self, root: Path):
        self.root = root
        self._by_name: dict[str, list[Path]] | None = None

    def find(self, image_path: str) -> Path | None:
        parts = [p for p in PurePosixPath(image_path).parts if p not in ("/", "")]
        # "/Dataset/train/spore_1.png" → Dataset/train/spore_1.png, train/spore_1.png, spore_1.png
        for k in range(len(parts)):
            cand = self.root.joinpath(*parts[k:])
            if cand.is_file():
                return cand
        if self._by_name is None:
            self._by_name = {}
            for p in self.root.rglob("*"):
                if p.is_file():
                    self._by_name.setdefault(p.name, []).append(p)
        hits = self._by_name.get(parts[-1], []) if parts else []
        if len(hits) > 1 and len(parts) > 1:
            hits = [h for h in hits if parts[-2] in h.parts]
        return hits[0] if len(hits) == 1 else None


def _place(src: Path, dst: Path, link: bool) -> None:
    """Hard-link (same file system) or copy ``src`` to ``dst``, atomically."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.import.tmp")
    with contextlib.suppress(OSError):
        tmp.unlink()
    try:
        if link:
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
        else:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise fail(f"cannot write {dst} ({e.strerror or e})", "check free space and permissions") from None


def import_release(
    split_files: Sequence[str | Path],
    images: str | Path,
    out: str | Path,
    *,
    link: bool = True,
    allow_missing: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert the release split files + downloaded images into ``out``; returns the manifest."""
    images, out = Path(images), Path(out)
    if not split_files:
        raise fail("no split files given", "pass train_data.json val_data.json test_data.json")
    if not images.is_dir():
        raise fail(
            f"--images {images} is not a folder", "point it at the folder where you unpacked the images"
        )
    splits = [(Path(p), *read_split_file(Path(p))) for p in split_files]
    labels = [r["class_label"] for _, _, recs in splits for r in recs]
    classes = [c for c in PAPER_CLASSES if c in labels] + sorted(
        {c for c in labels if c not in PAPER_CLASSES}
    )

    finder = _Finder(images)
    plan: list[tuple[dict[str, Any], Path]] = []
    missing: list[str] = []
    seen: set[str] = set()
    for path, split, recs in splits:
        for r in recs:
            src = finder.find(r["image_path"])
            if src is None:
                missing.append(r["image_path"])
                continue
            name = PurePosixPath(r["image_path"]).name
            file_name = f"{split}/{r['class_label']}/{name}"
            if file_name in seen:
                raise fail(f"{path}: {r['image_path']} is listed twice", "remove the duplicate record")
            seen.add(file_name)
            temp = r.get("temperature")
            row = {
                "file_name": file_name,
                "split": split,
                "label": r["class_label"],
                "label_id": classes.index(r["class_label"]),
                "index": len(plan),
                "temperature_K": float(temp) if isinstance(temp, (int, float)) else None,
                "description": r.get("description") if isinstance(r.get("description"), str) else None,
                "source_path": r["image_path"],
                "source_split_file": path.name,
            }
            plan.append((row, src))
    total = len(plan) + len(missing)
    if missing and not allow_missing:
        raise fail(
            f"{len(missing)} of {total} referenced images are missing under {images} (first: {missing[0]})",
            "point --images at the folder holding the unpacked Mendeley images, or pass --allow-missing",
        )
    if not plan:
        raise fail(f"none of the {total} referenced images were found under {images}", "check --images")

    prepare_output(out, "import", resume=False, overwrite=overwrite, joining=False)
    for row, src in plan:
        _place(src, out / row["file_name"], link)
    rows = [row for row, _ in plan]
    write_metadata(out, rows, per_split=True)
    if missing:
        (out / "missing.txt").write_text("".join(m + "\n" for m in missing), encoding="utf-8")

    class _J:  # split_summary reads .split and .label
        def __init__(self, r: dict[str, Any]):
            self.split, self.label = r["split"], r["label"]

    manifest = {
        "format_version": 1,
        "name": "fungalzsl-release-import",
        "classes": classes,
        "splits": split_summary([_J(r) for r in rows], classes),
        "num_images": len(rows),
        "mode": "import",
        "format": "folder",
        "source": {
            "split_files": {p.name: sha256_file(p) for p, _, _ in splits},
            "images": str(images.resolve()),
            "missing": len(missing),
        },
        "metadata": ["metadata.parquet", "metadata.jsonl", "metadata.csv"],
        "settings_hash": "import",
    }
    atomic_write_json(out / "dataset.json", manifest)
    manifest["missing"] = missing
    return manifest
