"""``generate_dataset``: the Python entry point behind ``fungalzsl generate``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fungalzsl import __version__
from fungalzsl.errors import fail
from fungalzsl.io import atomic_write_json, sha256_json
from fungalzsl.runtime import available_cpus
from fungalzsl.synth.plan import IMAGE_ALGORITHM, Job, parse_shard, plan_classes, plan_sequences
from fungalzsl.synth.preset import GeneratorPreset, load_preset, with_overrides
from fungalzsl.synth.writer import (
    PROGRESS_DIR,
    SAMPLES_PER_SHARD,
    Journal,
    WorkerPool,
    clean_temp_files,
    finalize,
    mask_file_name,
    part_tmp_dir,
    prepare_output,
    render_job,
    shard_groups,
    split_summary,
    worker_state,
    write_job,
    write_shard,
)

Mode = Literal["classes", "sequence"]
Format = Literal["folder", "webdataset"]


def resolve_preset(preset: str | Path | GeneratorPreset, **overrides: Any) -> GeneratorPreset:
    base = preset if isinstance(preset, GeneratorPreset) else load_preset(preset)
    return with_overrides(base, **overrides)


def plan(preset: GeneratorPreset, mode: Mode, seed: int) -> list[Job]:
    if mode == "sequence":
        return plan_sequences(preset, preset.num_images, seed)
    if mode != "classes":
        raise fail(f"unknown --mode {mode!r}", "use 'classes' or 'sequence'")
    return plan_classes(preset, preset.num_images)


def generate_dataset(
    out: str | Path,
    preset: str | Path | GeneratorPreset = "paper",
    *,
    num_images: int | None = None,
    size: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    mode: Mode = "classes",
    palette: Literal["paper", "random"] | None = None,
    fmt: Format = "folder",
    shard: str | tuple[int, int] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    renderer: Literal["fast", "matplotlib"] = "fast",
    grayscale: bool | None = None,
    noise_sd: float | None = None,
    blur_radius: float | None = None,
    background: str | None = None,
    samples_per_shard: int = SAMPLES_PER_SHARD,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    masks: bool = False,
) -> dict[str, Any]:
    """Generate (or finish) a synthetic dataset in ``out``; returns the manifest (``dataset.json``).

    Keyword arguments override the preset (None keeps the preset's value). With ``shard=(i, n)`` only
    part i of n is made; the part that completes the set writes metadata and manifest. For a shard
    part that does not complete the set, the returned dict has ``"complete": False``."""
    out = Path(out)
    if fmt not in ("folder", "webdataset"):
        raise fail(f"unknown --format {fmt!r}", "use 'folder' or 'webdataset'")
    if renderer not in ("fast", "matplotlib"):
        raise fail(f"unknown --renderer {renderer!r}", "use 'fast' or 'matplotlib'")
    if seed < 0 or seed >= 2**63:
        raise fail(f"--seed {seed} is out of range", "use a non-negative integer below 2**63")
    part = shard if isinstance(shard, tuple) else parse_shard(shard)
    if not (
        isinstance(part[0], int) and isinstance(part[1], int) and part[1] >= 1 and 0 <= part[0] < part[1]
    ):
        raise fail(f"shard {part} is invalid", "use (i, n) with 0 <= i < n")
    if not 1 <= samples_per_shard <= 1_000_000:
        raise fail(
            f"--samples-per-shard {samples_per_shard} is out of range", "use 1 to 1,000,000 (default 1000)"
        )
    workers = available_cpus() if workers is None else workers
    if workers < 1 or workers > 1024:
        raise fail(f"--workers {workers} is out of range", "use 1 or more")
    cfg = resolve_preset(
        preset,
        num_images=num_images,
        size=size,
        palette=palette,
        grayscale=grayscale,
        noise_sd=noise_sd,
        blur_radius=blur_radius,
        background=background,
    )
    if masks:
        _check_masks(cfg, renderer)
    settings = {
        "preset": cfg.to_dict(),
        "seed": seed,
        "mode": mode,
        "format": fmt,
        "renderer": renderer,
        "generator": f"fungalzsl {__version__}",
        "algorithm": IMAGE_ALGORITHM,
    }
    if fmt == "webdataset":
        settings["samples_per_shard"] = samples_per_shard
    if masks:  # only when on: datasets made without masks keep their settings hash
        settings["masks"] = True
    settings_hash = sha256_json(settings)[:16]
    jobs = plan(cfg, mode, seed)
    prepare_output(out, settings_hash, resume, overwrite, joining=part[1] > 1, algorithm=IMAGE_ALGORITHM)
    manifest_path = out / "dataset.json"
    if manifest_path.is_file():
        return json.loads(manifest_path.read_text())  # already complete with these settings
    atomic_write_json(out / PROGRESS_DIR / "settings.json", {"settings_hash": settings_hash, **settings})
    clean_temp_files(out, part)
    _preflight(cfg, seed, jobs, mode)

    run = _Run(
        out,
        cfg,
        jobs,
        part,
        workers,
        seed,
        renderer,
        mode,
        fmt,
        settings_hash,
        _preset_name(preset),
        samples_per_shard,
        masks,
    )
    try:
        return run.execute(progress, on_progress)
    except OSError as e:
        raise fail(
            f"cannot write in {out} ({e.strerror or e})",
            "check free disk space and permissions, then --resume",
        ) from None


@dataclass
class _Run:
    """One checked generation request: does the missing work, then finalises if the set is whole."""

    out: Path
    cfg: GeneratorPreset
    jobs: list[Job]
    part: tuple[int, int]
    workers: int
    seed: int
    renderer: str
    mode: str
    fmt: str
    settings_hash: str
    preset_name: str
    per_shard: int
    masks: bool = False

    def image_files(self, job: Job) -> list[Path]:
        """The files a finished folder-format image has: the image and, with masks, its two masks."""
        files = [self.out / job.file_name]
        if self.masks:
            files += [self.out / mask_file_name(job, e) for e in ("mask.png", "inst.png")]
        return files

    def image_done(self, job: Job, rows: dict[int, dict]) -> bool:
        return job.index in rows and all(p.is_file() for p in self.image_files(job))

    def execute(self, progress: bool, on_progress: Callable[[int, int], None] | None) -> dict[str, Any]:
        out, jobs, part = self.out, self.jobs, self.part
        journal = Journal(out, part)
        done_rows = journal.rows()
        state = worker_state(
            self.cfg,
            self.seed,
            self.cfg.size,
            self.renderer,
            self.mode,
            out,
            part_tmp_dir(out, part),
            masks=self.masks,
        )
        started = time.perf_counter()
        try:
            if self.fmt == "folder":
                mine = [j for j in jobs if j.index % part[1] == part[0]]
                todo = [j for j in mine if not self.image_done(j, done_rows)]
                _run_folder(todo, len(mine), self.workers, state, journal, progress, on_progress)
            else:
                groups = [
                    g for k, g in enumerate(shard_groups(jobs, self.per_shard)) if k % part[1] == part[0]
                ]
                todo_g = [
                    (p, js)
                    for p, js in groups
                    if not (out / p).is_file() or any(j.index not in done_rows for j in js)
                ]
                total = sum(len(js) for _, js in groups)
                _run_shards(out, todo_g, total, self.workers, state, journal, progress, on_progress)
        finally:
            journal.flush()  # interrupted or not, finished images stay finished
        elapsed = time.perf_counter() - started

        rows = journal.rows()
        if self.fmt == "folder":
            missing = [j for j in jobs if not self.image_done(j, rows)]
        else:
            missing = [
                j
                for p, js in shard_groups(jobs, self.per_shard)
                for j in js
                if j.index not in rows or not (out / p).is_file()
            ]
        if missing:
            return {"complete": False, "missing": len(missing), "part": list(part), "seconds": elapsed}
        manifest = self.manifest()
        if self.fmt == "webdataset":
            for p, js in shard_groups(jobs, self.per_shard):
                for j in js:
                    rows[j.index].update(file_name=f"{p}#{j.key}.png", shard=p, key=j.key)
                    if self.masks:
                        rows[j.index].update(
                            mask_file_name=f"{p}#{j.key}.mask.png", instance_file_name=f"{p}#{j.key}.inst.png"
                        )
        finalize(out, jobs, rows, manifest)
        manifest["seconds"] = elapsed
        return manifest

    def manifest(self) -> dict[str, Any]:
        cfg = self.cfg
        manifest: dict[str, Any] = {
            "format_version": 1,
            "name": "fungalzsl-synthetic",
            "classes": cfg.class_names,
            "splits": split_summary(self.jobs, cfg.class_names),
            "num_images": len(self.jobs),
            "size": cfg.size,
            "seed": self.seed,
            "mode": self.mode,
            "format": self.fmt,
            "renderer": self.renderer,
            "palette": cfg.variation.palette,
            "preset": {"name": self.preset_name, "hash": cfg.hash(), "settings": cfg.to_dict()},
            "settings_hash": self.settings_hash,
            "generator": f"fungalzsl {__version__}",
            "algorithm": IMAGE_ALGORITHM,
            "metadata": ["metadata.parquet", "metadata.jsonl", "metadata.csv"],
            "rng": "numpy.random.default_rng(SeedSequence([seed, index]))",
            "masks": self.masks,
        }
        if self.masks:
            from fungalzsl.synth.masks import COVERAGE_THRESHOLD, label_map

            manifest["label_map"] = label_map(cfg.class_names)
            manifest["mask_coverage_threshold"] = round(COVERAGE_THRESHOLD, 6)
            manifest["mask_files"] = (
                {"labels": "masks/INDEX.mask.png", "instances": "masks/INDEX.inst.png"}
                if self.fmt == "folder"
                else {"labels": "KEY.mask.png", "instances": "KEY.inst.png"}
            )
        if self.fmt == "webdataset":
            manifest["shards"] = {p: len(js) for p, js in shard_groups(self.jobs, self.per_shard)}
        return manifest


def _check_masks(cfg: GeneratorPreset, renderer: str) -> None:
    """Refuse, before any work, what the masks cannot represent."""
    if renderer != "fast":
        raise fail(
            "--masks needs --renderer fast",
            "masks are drawn with skia and align pixel-exactly only with skia's images; drop --renderer",
        )
    if len(cfg.classes) > 255:
        raise fail(
            f"--masks stores labels in 8 bits, but the preset has {len(cfg.classes)} classes",
            "use at most 255 classes",
        )


def _preset_name(preset: object) -> str:
    if isinstance(preset, GeneratorPreset):
        return "custom"
    return str(preset)


def _preflight(cfg: GeneratorPreset, seed: int, jobs: list[Job], mode: str) -> None:
    """Sample the geometry of one image per class in this process, so an absurd preset fails here with
    one line instead of inside a worker."""
    from fungalzsl.synth.sample import make_scene

    seen: set[str] = set()
    for j in jobs:
        if j.label not in seen:
            seen.add(j.label)
            make_scene(cfg, seed, j, mode)


def _useful_workers(workers: int, n: int) -> int:
    """Starting a worker costs ~0.5 s of imports; below ~8 images each it is not worth it."""
    return max(1, min(workers, n // 8))


def _bar(total: int, enabled: bool):  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]generating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
        console=Console(stderr=True),  # stdout stays for the result line
    )


def _run_folder(todo, total, workers, state, journal, progress, on_progress) -> None:  # type: ignore[no-untyped-def]
    done0 = total - len(todo)
    with _bar(total, progress) as bar, WorkerPool(_useful_workers(workers, len(todo)), state) as pool:
        task = bar.add_task("images", total=total, completed=done0, rate="")
        t0 = time.perf_counter()
        for n, row in enumerate(pool.map(write_job, todo, ordered=False), start=1):
            journal.add([row])
            rate = n / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, advance=1, rate=f"{rate:,.0f} img/s")
            if on_progress:
                on_progress(done0 + n, total)


def _run_shards(out, todo, total, workers, state, journal, progress, on_progress) -> None:  # type: ignore[no-untyped-def]
    remaining = sum(len(js) for _, js in todo)
    done0 = total - remaining
    with _bar(total, progress) as bar, WorkerPool(_useful_workers(workers, remaining), state) as pool:
        task = bar.add_task("images", total=total, completed=done0, rate="")
        t0, n = time.perf_counter(), 0
        for path, js in todo:
            samples = []
            for row, files in pool.map(render_job, js, ordered=True):
                samples.append((row, files))
                n += 1
                bar.update(task, advance=1, rate=f"{n / max(time.perf_counter() - t0, 1e-9):,.0f} img/s")
                if on_progress:
                    on_progress(done0 + n, total)
            write_shard(out / path, samples, Path(state["tmp_dir"]))
            journal.add([r for r, _ in samples])
            journal.flush()
