"""The worker pool that renders planned images, and the loops that feed it.

Each worker process holds the run's settings (``worker_state``) once, then turns ``Job``s into files:
``write_job`` renders one image (and its masks) and renames it into place (ImageFolder), ``render_job``
returns the bytes for the main process to pack into a WebDataset shard. With one worker everything
runs in this process (tests, debugging); with more, a ``spawn`` pool. Images are the same either way:
each draws from its own random stream (:mod:`fungalzsl.synth.rng`)."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fungalzsl.errors import fail
from fungalzsl.synth.layout import Journal, mask_file_name, write_shard
from fungalzsl.synth.plan import Job
from fungalzsl.synth.preset import GeneratorPreset

OnProgress = Callable[[int, int], None] | None  # called with (images done, images in this part)

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


def write_job(job: Job) -> dict:
    """Render one image (and its masks) and move the files into place; returns its metadata row.

    Masks are renamed into place before the image, and the row is journalled after both, once they are
    on disk (``Journal.flush``): an image whose masks are missing, or whose bytes a power loss could
    still take, is never counted as done."""
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
            tmps.append(tmp)
            tmp.write_bytes(data)
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
    """What every worker needs to render and place images; picklable, sent once per process."""
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


def useful_workers(workers: int, n: int) -> int:
    """Starting a worker costs ~0.5 s of imports; below ~8 images each it is not worth it."""
    return max(1, min(workers, n // 8))


class _Progress:
    """The progress bar (rich, on stderr: stdout stays for the result line) and the caller's
    ``on_progress``, advanced one finished image at a time."""

    def __init__(self, total: int, done: int, enabled: bool, on_progress: OnProgress) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]generating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            disable=not enabled,
            transient=False,
            console=Console(stderr=True),
        )
        self.total, self.done0, self.n = total, done, 0
        self.on_progress = on_progress

    def __enter__(self) -> _Progress:
        self.bar.__enter__()
        self.task = self.bar.add_task("images", total=self.total, completed=self.done0, rate="")
        self.t0 = time.perf_counter()
        return self

    def tick(self) -> None:
        self.n += 1
        rate = self.n / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(self.task, advance=1, rate=f"{rate:,.0f} img/s")
        if self.on_progress:
            self.on_progress(self.done0 + self.n, self.total)

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)


def run_folder(
    todo: list[Job],
    total: int,
    workers: int,
    state: dict[str, Any],
    journal: Journal,
    progress: bool,
    on_progress: OnProgress,
) -> None:
    """Make the ImageFolder images ``todo`` (of ``total`` in this part), journalling each row as it lands."""
    with (
        _Progress(total, total - len(todo), progress, on_progress) as bar,
        WorkerPool(useful_workers(workers, len(todo)), state) as pool,
    ):
        out = Path(state["out"])
        for row in pool.map(write_job, todo, ordered=False):
            files = [
                row["file_name"],
                *(row[k] for k in ("mask_file_name", "instance_file_name") if k in row),
            ]
            journal.add([row], [out / f for f in files])
            bar.tick()


def run_shards(
    out: Path,
    todo: list[tuple[str, list[Job]]],
    total: int,
    workers: int,
    state: dict[str, Any],
    journal: Journal,
    progress: bool,
    on_progress: OnProgress,
) -> None:
    """Make the WebDataset shards ``todo`` ((path, jobs) pairs), one whole shard at a time: its images
    are rendered in order, the tar is renamed into place, then its rows are journalled."""
    remaining = sum(len(js) for _, js in todo)
    with (
        _Progress(total, total - remaining, progress, on_progress) as bar,
        WorkerPool(useful_workers(workers, remaining), state) as pool,
    ):
        for path, js in todo:
            samples = []
            for row, files in pool.map(render_job, js, ordered=True):
                samples.append((row, files))
                bar.tick()
            write_shard(out / path, samples, Path(state["tmp_dir"]))
            journal.add([r for r, _ in samples], [out / path])
            journal.flush()
