"""Import the authors' released FungalZSL split files into our dataset layout.

The release (github.com/Anjuyaduvanshi/Fungi-Dataset) ships ``{train,val,test}_data.json``: a JSON
list of ``{"image_path": "/Dataset/<split>/<class>_<n>.png", "class_label", "description",
"temperature"}``; the images themselves are downloaded separately from Mendeley Data. We find each
referenced image under ``--images`` with :mod:`fungalzsl.release_split` (the one reader and path
rule, shared with ``evaluate``), check every record and destination before writing anything, then
hard-link (or copy) them into ``OUT/<split>/<class>/`` and write metadata and manifest as
``fungalzsl generate`` does."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from fungalzsl.errors import fail
from fungalzsl.io import atomic_write_json, safe_child, sha256_file
from fungalzsl.release_split import ImageFinder, read_split_file
from fungalzsl.synth.layout import prepare_output, split_summary, write_metadata
from fungalzsl.synth.preset import PAPER_CLASSES


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
    splits = [read_split_file(p) for p in split_files]
    labels = [r["class_label"] for s in splits for r in s.records]
    classes = [c for c in PAPER_CLASSES if c in labels] + sorted(
        {c for c in labels if c not in PAPER_CLASSES}
    )

    finder = ImageFinder(images)
    plan: list[tuple[dict[str, Any], Path]] = []
    missing: list[str] = []
    seen: set[str] = set()
    for s in splits:
        for i, r in enumerate(s.records):
            src = finder.find(r["image_path"], s.where(i))
            if src is None:
                missing.append(r["image_path"])
                continue
            name = PurePosixPath(r["image_path"]).name
            # every name is plain (checked by the reader) and no symlink in OUT may lead elsewhere
            safe_child(out, s.name, r["class_label"], name, what=s.where(i), root_label="--out")
            file_name = f"{s.name}/{r['class_label']}/{name}"
            if file_name in seen:
                raise fail(f"{s.path}: {r['image_path']} is listed twice", "remove the duplicate record")
            seen.add(file_name)
            temp = r.get("temperature")
            row = {
                "file_name": file_name,
                "split": s.name,
                "label": r["class_label"],
                "label_id": classes.index(r["class_label"]),
                "index": len(plan),
                "temperature_K": float(temp) if isinstance(temp, (int, float)) else None,
                "description": r.get("description") if isinstance(r.get("description"), str) else None,
                "source_path": r["image_path"],
                "source_split_file": s.path.name,
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
            "split_files": {s.path.name: sha256_file(s.path) for s in splits},
            "images": str(images.resolve()),
            "missing": len(missing),
        },
        "metadata": ["metadata.parquet", "metadata.jsonl", "metadata.csv"],
        "settings_hash": "import",
    }
    atomic_write_json(out / "dataset.json", manifest)
    manifest["missing"] = missing
    return manifest
