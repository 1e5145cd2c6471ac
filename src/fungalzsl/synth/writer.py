"""Write a synthetic dataset to disk: images (ImageFolder or WebDataset shards), metadata, manifest.

Crash safety and resumption:
* every image or shard is written under a temporary name and renamed, so a file with the final name
  is always complete;
* finished rows are appended (fsynced) to a journal in ``DIR/.fungalzsl-progress/``; ``--resume``
  skips images whose file and row exist and redoes the rest (images are deterministic, so a redo is
  byte-identical);
* ``metadata.*`` and then ``dataset.json`` are written last, only when every image exists: a dataset
  with a manifest is complete.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing as mp
import os
import shutil
import signal
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fungalzsl.errors import fail
from fungalzsl.io import (
    append_jsonl,
    atomic_path,
    atomic_write_json,
    ensure_writable_dir,
    name_problem,
    read_jsonl,
    write_jsonl,
)
from fungalzsl.synth.plan import Job
from fungalzsl.synth.preset import GeneratorPreset

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


# ---------------------------------------------------------------- worker side (one per process)
_STATE: dict[str, Any] = {}


def _init_worker(state: dict[str, Any], in_pool: bool = False) -> None:
    # Each worker draws with one thread; parallelism comes from processes.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if in_pool:
        # Ctrl-C is the main process's to handle (it stops the pool and keeps finished work);
        # workers would only print a traceback each.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _STATE.clear()
    _STATE.update(state)


def render_job(job: Job) -> tuple[dict, dict[str, bytes]]:
    """One image's metadata row and files by WebDataset extension (``png``, and ``mask.png``,
    ``inst.png`` with masks)."""
    from fungalzsl.synth.sample import make_files

    s = _STATE
    files, row = make_files(
        s["preset"], s["seed"], job, s["size"], s["renderer"], s["mode"], masks=s.get("masks", False)
    )
    if s.get("masks"):
        row["mask_file_name"] = mask_file_name(job, "mask.png")
        row["instance_file_name"] = mask_file_name(job, "inst.png")
    return row, files


def mask_file_name(job: Job, ext: str) -> str:
    """Where an ImageFolder dataset keeps a mask: ``masks/INDEX.mask.png``, ``masks/INDEX.inst.png``.

    Not beside the image: ImageFolder readers would take a mask for one more image of the class; and no
    split name in the path, which Hugging Face ``imagefolder`` would read as a split."""
    return f"{MASK_DIR}/{job.key}.{ext}"


def write_job(job: Job) -> dict:
    """Render one image (and its masks) and move the files into place; returns its metadata row.

    Masks are renamed into place before the image, and the row is journalled after both: an image
    whose masks are missing is never counted as done."""
    row, files = render_job(job)
    out = Path(_STATE["out"])
    targets = [
        (out / row[k], files[e])
        for k, e in (("mask_file_name", "mask.png"), ("instance_file_name", "inst.png"))
        if k in row
    ]
    targets.append((out / job.file_name, files["png"]))
    # Temporary files live in this part's own folder, so concurrent --shard parts never touch them.
    tmps = []
    try:
        for final, data in targets:
            tmp = Path(_STATE["tmp_dir"]) / f"{final.name}.{os.getpid()}.tmp"
            tmp.write_bytes(data)
            tmps.append(tmp)
        for (final, _), tmp in zip(targets, tmps):
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
    except OSError as e:
        for tmp in tmps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise fail(
            f"cannot write {targets[-1][0]} ({e.strerror or e})", "check free disk space and permissions"
        ) from None
    return row


# ---------------------------------------------------------------- main side
class WorkerPool:
    """A process pool that degrades to in-process work for one worker (tests, debugging)."""

    def __init__(self, workers: int, state: dict[str, Any]):
        self.workers = workers
        self.state = state
        self.pool = None

    def __enter__(self) -> WorkerPool:
        if self.workers > 1:
            # spawn: safe even when the caller already runs threads (torch, rich) that fork would copy.
            from fungalzsl.runtime import tuned_allocator_for_children

            ctx = mp.get_context("spawn")
            with tuned_allocator_for_children():
                self.pool = ctx.Pool(self.workers, initializer=_init_worker, initargs=(self.state, True))
        else:
            _init_worker(self.state)
        return self

    def map(self, fn: Any, jobs: list[Job], ordered: bool) -> Iterator[Any]:
        if self.pool is None:
            return map(fn, jobs)
        chunk = max(1, min(16, len(jobs) // (self.workers * 8) or 1))
        return (self.pool.imap if ordered else self.pool.imap_unordered)(fn, jobs, chunksize=chunk)

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            if exc[0] is None:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()


class Journal:
    """Rows of finished images, appended in small fsynced batches; one file per ``--shard`` part."""

    def __init__(self, out: Path, part: tuple[int, int]):
        self.dir = out / PROGRESS_DIR
        self.path = self.dir / f"rows-{part[0]}-of-{part[1]}.jsonl"
        self.pending: list[dict] = []
        self.last_flush = time.monotonic()

    def add(self, rows: list[dict]) -> None:
        # Batched fsyncs: a hard kill loses at most ~1 s of rows, and those images are simply redone.
        self.pending.extend(rows)
        if len(self.pending) >= 256 or time.monotonic() - self.last_flush > 1.0:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            append_jsonl(self.path, self.pending)
            self.pending = []
        self.last_flush = time.monotonic()

    def rows(self) -> dict[int, dict]:
        """All journalled rows of every part, by image index."""
        out: dict[int, dict] = {}
        if self.dir.is_dir():
            for p in sorted(self.dir.glob("rows-*.jsonl")):
                for r in read_jsonl(p):
                    out[int(r["index"])] = r
        return out


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


def worker_state(
    preset: GeneratorPreset,
    seed: int,
    size: int,
    renderer: str,
    mode: str,
    out: Path,
    tmp_dir: Path,
    masks: bool = False,
) -> dict:
    return {
        "masks": masks,
        "preset": preset,
        "seed": seed,
        "size": size,
        "renderer": renderer,
        "mode": mode,
        "out": str(out),
        "tmp_dir": str(tmp_dir),
    }
