"""The dataset on disk: where every file of a synthetic dataset goes, and the order it is written in.

Layout (docs/dataset.md): ``SPLIT/CLASS/INDEX.png`` (ImageFolder) or ``shards/SPLIT-NNNNNN.tar``
(WebDataset), ``masks/INDEX.{mask,inst}.png`` with ``--masks``, ``metadata.parquet/.jsonl/.csv`` and
``SPLIT/metadata.jsonl``, then ``dataset.json``; work in progress lives in ``.fungalzsl-progress/``.

Crash safety and resumption:
* every image or shard is written under a temporary name and renamed, so a file with the final name
  is always complete;
* a row goes into the journal in ``DIR/.fungalzsl-progress/`` (appended, fsynced) only once its
  files and their names are on disk (``fungalzsl.io.make_durable``, once per batch of rows);
* ``--resume`` skips images whose row exists and whose files pass a cheap check (non-empty, a whole
  PNG or tar: ``file_is_whole``) and redoes the rest (images are deterministic, so a redo is
  byte-identical);
* ``metadata.*`` and then ``dataset.json`` are written last, only when every image exists: a dataset
  with a manifest is complete;
* an existing ``--out`` is checked before any work: runs are never mixed, and ``--overwrite`` deletes
  only what fungalzsl wrote.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any

from fungalzsl.errors import fail
from fungalzsl.io import (
    append_jsonl,
    atomic_path,
    atomic_write_json,
    ensure_writable_dir,
    make_durable,
    name_problem,
    read_jsonl,
    write_jsonl,
)
from fungalzsl.synth.plan import Job

PROGRESS_DIR = ".fungalzsl-progress"
SHARD_DIR = "shards"
MASK_DIR = "masks"
SAMPLES_PER_SHARD = 1000
OUTPUT_NAMES = (
    "dataset.json",
    "metadata.parquet",
    "metadata.jsonl",
    "metadata.csv",
    "missing.txt",
    SHARD_DIR,
    MASK_DIR,
    PROGRESS_DIR,
)


def mask_file_name(job: Job, ext: str) -> str:
    """Where an ImageFolder dataset keeps a mask: ``masks/INDEX.mask.png``, ``masks/INDEX.inst.png``.

    Not beside the image: ImageFolder readers would take a mask for one more image of the class; and no
    split name in the path, which Hugging Face ``imagefolder`` would read as a split."""
    return f"{MASK_DIR}/{job.key}.{ext}"


def image_files(out: Path, job: Job, masks: bool) -> list[Path]:
    """The files a finished folder-format image has: the image and, with masks, its two masks."""
    files = [out / job.file_name]
    if masks:
        files += [out / mask_file_name(job, e) for e in ("mask.png", "inst.png")]
    return files


def write_shard(path: Path, samples: list[tuple[dict, dict[str, bytes]]], tmp_dir: Path) -> None:
    """One WebDataset tar: KEY.png, [KEY.mask.png, KEY.inst.png,] KEY.json (metadata row), KEY.cls
    (label id), KEY.txt (label).

    Fixed owner, mode and mtime make the tar byte-identical across runs."""

    def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(data))

    tmp = tmp_dir / f"{path.name}.{os.getpid()}.tmp"
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for row, files in samples:
            key = f"{row['index']:06d}"
            for ext in ("png", "mask.png", "inst.png"):
                if ext in files:
                    add(tar, f"{key}.{ext}", files[ext])
            add(tar, f"{key}.json", json.dumps(row, sort_keys=True).encode())
            add(tar, f"{key}.cls", str(row["label_id"]).encode())
            add(tar, f"{key}.txt", row["label"].encode())
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, path)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def file_is_whole(path: Path) -> bool:
    """A cheap check of a file a resume keeps: non-empty and, for a PNG, one that Pillow's ``verify``
    accepts (signature, every chunk's CRC, the end chunk: no pixels decoded); for a tar, one whose
    members all list. Catches the 0-byte, cut-short or zero-filled files a power loss can leave."""
    try:
        if path.stat().st_size == 0:
            return False
        if path.suffix == ".tar":
            with tarfile.open(path) as tar:
                return bool(tar.getmembers())
        with open(path, "rb") as f:
            if f.read(8) != PNG_SIGNATURE:
                return False
        from PIL import Image

        with Image.open(path) as im:
            im.verify()
        return True
    except Exception:  # Pillow raises OSError, SyntaxError, struct.error… for damaged files
        return False


def shard_groups(jobs: list[Job], per_shard: int = SAMPLES_PER_SHARD) -> list[tuple[str, list[Job]]]:
    """Consecutive jobs of each split grouped into shards: ('shards/train-000000.tar', jobs)."""
    out: list[tuple[str, list[Job]]] = []
    by_split: dict[str, list[Job]] = {}
    for j in jobs:
        by_split.setdefault(j.split, []).append(j)
    for split, js in by_split.items():
        for k in range(0, len(js), per_shard):
            out.append((f"{SHARD_DIR}/{split}-{k // per_shard:06d}.tar", js[k : k + per_shard]))
    return out


def point_rows_into_shards(jobs: list[Job], rows: dict[int, dict], per_shard: int, masks: bool) -> None:
    """WebDataset rows name their files inside the shard: ``shards/train-000000.tar#000012.png``."""
    for p, js in shard_groups(jobs, per_shard):
        for j in js:
            rows[j.index].update(file_name=f"{p}#{j.key}.png", shard=p, key=j.key)
            if masks:
                rows[j.index].update(
                    mask_file_name=f"{p}#{j.key}.mask.png", instance_file_name=f"{p}#{j.key}.inst.png"
                )


def write_metadata(out: Path, rows: list[dict], per_split: bool) -> None:
    """``metadata.parquet``, ``.jsonl`` and ``.csv`` at the top (paths relative to ``out``), and for
    ImageFolder trees also ``SPLIT/metadata.jsonl`` (paths relative to the split folder), which is
    where Hugging Face ``imagefolder`` looks for a split's metadata."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows)
    with atomic_path(out / "metadata.parquet") as tmp:
        pq.write_table(table, tmp)
    with atomic_path(out / "metadata.csv") as tmp:
        pacsv.write_csv(table, tmp)
    write_jsonl(out / "metadata.jsonl", rows)
    if per_split:
        by_split: dict[str, list[dict]] = {}
        for r in rows:
            rel = {"file_name": r["file_name"].split("/", 1)[1]}
            for k in ("mask_file_name", "instance_file_name"):
                if k in r:  # masks/ sits beside the split folders
                    rel[k] = f"../{r[k]}"
            by_split.setdefault(r["split"], []).append({**r, **rel})
        for split, rs in by_split.items():
            write_jsonl(out / split / "metadata.jsonl", rs)


def finalize(out: Path, jobs: list[Job], rows: dict[int, dict], manifest: dict[str, Any]) -> None:
    """Metadata files, then the manifest (last: its presence means the dataset is complete)."""
    write_metadata(out, [rows[j.index] for j in jobs], per_split=manifest["format"] == "folder")
    atomic_write_json(out / "dataset.json", manifest)
    shutil.rmtree(out / PROGRESS_DIR, ignore_errors=True)


def split_summary(jobs: list[Job], classes: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for j in jobs:
        s = out.setdefault(j.split, {"count": 0, "per_class": dict.fromkeys(classes, 0)})
        s["count"] += 1
        s["per_class"][j.label] += 1
    return out


class Journal:
    """Rows of finished images, appended in small fsynced batches; one file per ``--shard`` part."""

    def __init__(self, out: Path, part: tuple[int, int]):
        self.dir = out / PROGRESS_DIR
        self.path = self.dir / f"rows-{part[0]}-of-{part[1]}.jsonl"
        self.pending: list[dict] = []
        self.files: list[Path] = []  # the pending rows' files, renamed into place
        self.last_flush = time.monotonic()

    def add(self, rows: list[dict], files: list[Path]) -> None:
        """Queue ``rows``, whose ``files`` were written and renamed into place."""
        # Batched: a hard kill loses at most ~1 s of rows, and those images are simply redone.
        self.pending.extend(rows)
        self.files.extend(files)
        if len(self.pending) >= 256 or time.monotonic() - self.last_flush > 1.0:
            self.flush()

    def flush(self) -> None:
        """Put the pending rows' files on disk (data and names), then append the rows (fsynced)."""
        if self.pending:
            make_durable(self.files)
            append_jsonl(self.path, self.pending)
            self.pending, self.files = [], []
        self.last_flush = time.monotonic()

    def rows(self) -> dict[int, dict]:
        """All journalled rows of every part, by image index."""
        out: dict[int, dict] = {}
        if self.dir.is_dir():
            for p in sorted(self.dir.glob("rows-*.jsonl")):
                for r in read_jsonl(p):
                    out[int(r["index"])] = r
        return out


def part_tmp_dir(out: Path, part: tuple[int, int]) -> Path:
    return out / PROGRESS_DIR / f"tmp-{part[0]}-of-{part[1]}"


def clean_temp_files(out: Path, part: tuple[int, int]) -> None:
    """Remove what a killed run of this part left half-written. Other parts' temporary files are left
    alone (they may be running right now); a whole run (1/1) also sweeps stray ``.*.tmp`` files."""
    tmp_dir = part_tmp_dir(out, part)
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    if part[1] == 1:
        for p in out.rglob(".*.tmp"):
            with contextlib.suppress(OSError):
                p.unlink()


def _previous_settings(out: Path) -> dict[str, Any] | None:
    """Settings of the fungalzsl run that wrote ``out`` (finished or not), if any."""
    for f in (out / PROGRESS_DIR / "settings.json", out / "dataset.json"):
        if f.is_file():
            with contextlib.suppress(ValueError, OSError):
                data = json.loads(f.read_text())
                if isinstance(data, dict) and "settings_hash" in data:
                    return data
    return None


def _is_our_split_dir(p: Path) -> bool:
    """A split folder as we write it: class folders of images (and temporaries), metadata.jsonl."""
    for q in p.iterdir():
        if q.is_file() and q.name == "metadata.jsonl":
            continue
        if not q.is_dir():
            return False
        if any(not (f.is_file() and (f.suffix == ".png" or f.name.endswith(".tmp"))) for f in q.iterdir()):
            return False
    return True


def _is_our_mask_dir(p: Path) -> bool:
    """The masks folder as we write it: INDEX.mask.png and INDEX.inst.png files only."""
    return all(q.is_file() and q.name.endswith((".mask.png", ".inst.png")) for q in p.iterdir())


def _split_names(previous: dict[str, Any]) -> set[str]:
    names = set(previous.get("splits") or {})
    names |= set(((previous.get("preset") or {}).get("splits")) or {})  # progress settings.json
    names |= set((((previous.get("preset") or {}).get("settings") or {}).get("splits")) or {})  # manifest
    return names


def _remove_previous_output(out: Path, previous: dict[str, Any]) -> None:
    """--overwrite: delete what fungalzsl wrote in ``out``; leave everything else in place. A split
    folder holding files we did not write is refused (before anything is deleted): keeping it would
    leave old images mixed into the new dataset."""
    # split names come from a manifest on disk: only plain names are ours, and a symlinked split is not
    splits = [
        out / n for n in sorted(_split_names(previous)) if name_problem(n) is None and (out / n).is_dir()
    ]
    foreign = [p for p in splits if p.is_symlink() or not _is_our_split_dir(p)]
    masks = out / MASK_DIR
    if masks.is_dir() and not _is_our_mask_dir(masks):
        foreign.append(masks)
    if foreign:
        raise fail(
            f"--overwrite will not clear {foreign[0]}: it holds files fungalzsl did not write",
            "move them elsewhere, or choose a new --out",
        )
    for name in OUTPUT_NAMES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    for p in splits:
        shutil.rmtree(p)


def prepare_output(
    out: Path, settings_hash: str, resume: bool, overwrite: bool, joining: bool, algorithm: int | None = None
) -> None:
    """Check the output directory before any work: refuse to mix runs or clobber data we did not write.

    ``algorithm`` (``plan.IMAGE_ALGORITHM``) names the image code; runs that recorded none used 1."""
    if resume and overwrite:
        raise fail("--resume and --overwrite contradict each other", "pass only one")
    if out.exists() and not out.is_dir():
        raise fail(f"--out {out} is a file", "choose a directory")
    ensure_writable_dir(out)
    if not any(out.iterdir()):
        return
    previous = _previous_settings(out)
    if previous is None:
        raise fail(
            f"--out {out} is not empty and holds no fungalzsl dataset",
            "choose an empty or new directory (--resume and --overwrite only act on fungalzsl output)",
        )
    if overwrite:
        _remove_previous_output(out, previous)
        return
    if resume or joining:
        before = previous.get("algorithm", 1)
        if algorithm is not None and before != algorithm:
            raise fail(
                f"--out {out} was started by a fungalzsl version whose images differ from this one's "
                f"(image algorithm {before}, this version {algorithm})",
                "pass --overwrite to generate it again, or finish it with the fungalzsl version that started it",
            )
        if previous["settings_hash"] != settings_hash:
            raise fail(
                f"--out {out} was generated with different settings (preset, seed, size, count, mode or format)",
                "repeat the original options to resume, or pass --overwrite to start again",
            )
        return
    what = "a dataset" if (out / "dataset.json").is_file() else "an unfinished fungalzsl run"
    raise fail(
        f"--out {out} already holds {what}", "pass --resume to finish it, or --overwrite to replace it"
    )
