"""``generate_dataset``: the Python entry point behind ``fungalzsl generate``.

One call checks the request, fixes the settings whose hash guards ``--resume`` and ``--shard``,
prepares the output directory (:mod:`fungalzsl.synth.layout`), makes this part's missing images with
the worker pool (:mod:`fungalzsl.synth.workers`) and, once every image of every part exists, writes the
metadata files and then the manifest."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fungalzsl import __version__
from fungalzsl.errors import fail
from fungalzsl.io import atomic_write_json, sha256_json
from fungalzsl.runtime import available_cpus
from fungalzsl.synth.continuum import ordered_classes
from fungalzsl.synth.layout import (
    PROGRESS_DIR,
    SAMPLES_PER_SHARD,
    Journal,
    clean_temp_files,
    file_is_whole,
    finalize,
    image_files,
    part_tmp_dir,
    point_rows_into_shards,
    prepare_output,
    shard_groups,
    split_summary,
)
from fungalzsl.synth.plan import IMAGE_ALGORITHM, Job, parse_shard, plan_classes, plan_sequences
from fungalzsl.synth.preset import PAPER_CLASSES, GeneratorPreset, resolve_preset
from fungalzsl.synth.workers import OnProgress, run_folder, run_shards, worker_state

Mode = Literal["classes", "sequence", "continuum"]
Format = Literal["folder", "webdataset"]
GENERATOR = f"fungalzsl {__version__}"  # recorded in the settings and the manifest


def plan(preset: GeneratorPreset, mode: Mode, seed: int) -> list[Job]:
    """Every image of the dataset, in index order (see :mod:`fungalzsl.synth.plan`)."""
    if mode == "sequence":
        return plan_sequences(preset, preset.num_images, seed)
    if mode == "continuum":
        ordered_classes(preset)  # one-line error for classes it cannot interpolate
    elif mode != "classes":
        raise fail(f"unknown --mode {mode!r}", "use 'classes', 'sequence' or 'continuum'")
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
    on_progress: OnProgress = None,
    masks: bool = False,
    style: Literal["paper", "micrograph", "colony", "mixed"] | None = None,
) -> dict[str, Any]:
    """Generate (or finish) a synthetic dataset in ``out``; returns the manifest (``dataset.json``).

    Keyword arguments override the preset (None keeps the preset's value). With ``shard=(i, n)`` only
    part i of n is made; the part that completes the set writes metadata and manifest. For a shard
    part that does not complete the set, the returned dict has ``"complete": False``."""
    out = Path(out)
    part, workers = _check_request(fmt, renderer, seed, shard, samples_per_shard, workers)
    cfg = resolve_preset(
        preset,
        num_images=num_images,
        size=size,
        palette=palette,
        grayscale=grayscale,
        noise_sd=noise_sd,
        blur_radius=blur_radius,
        background=background,
        style=style,
    )
    _check_kinds(cfg, mode)  # first: its message names the test-only stages
    if cfg.variation.style != "paper":
        _check_style(cfg, mode, renderer)
    if masks:
        _check_masks(cfg, renderer)
    settings = _settings(cfg, seed, mode, fmt, renderer, samples_per_shard, masks)
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


def _check_request(
    fmt: str,
    renderer: str,
    seed: int,
    shard: str | tuple[int, int] | None,
    samples_per_shard: int,
    workers: int | None,
) -> tuple[tuple[int, int], int]:
    """Refuse, before reading the preset, what no preset can make valid; returns (part, workers)."""
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
    return part, workers


def _settings(
    cfg: GeneratorPreset,
    seed: int,
    mode: str,
    fmt: str,
    renderer: str,
    samples_per_shard: int,
    masks: bool,
) -> dict[str, Any]:
    """Everything that decides the dataset's bytes. Its hash is recorded in ``.fungalzsl-progress`` and
    the manifest, and a ``--resume`` or another ``--shard`` part with a different hash is refused."""
    settings: dict[str, Any] = {
        "preset": cfg.to_dict(),
        "seed": seed,
        "mode": mode,
        "format": fmt,
        "renderer": renderer,
        "generator": GENERATOR,
        "algorithm": IMAGE_ALGORITHM,
    }
    if fmt == "webdataset":
        settings["samples_per_shard"] = samples_per_shard
    if masks:  # only when on: datasets made without masks keep their settings hash
        settings["masks"] = True
    if cfg.variation.style != "paper":  # likewise: paper datasets keep theirs
        from fungalzsl.synth.style import STYLE_ALGORITHM

        settings["style_algorithm"] = STYLE_ALGORITHM
    return settings


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

    def image_done(self, job: Job, rows: dict[int, dict]) -> bool:
        """A folder-format image is done when its row is journalled and all its files exist."""
        return job.index in rows and all(p.is_file() for p in image_files(self.out, job, self.masks))

    def execute(self, progress: bool, on_progress: OnProgress) -> dict[str, Any]:
        journal = Journal(self.out, self.part)
        started = time.perf_counter()
        try:
            self.make_my_part(journal, progress, on_progress)
        finally:
            journal.flush()  # interrupted or not, finished images stay finished
        elapsed = time.perf_counter() - started

        rows = journal.rows()
        missing = self.missing(rows)
        if missing:
            return {"complete": False, "missing": missing, "part": list(self.part), "seconds": elapsed}
        manifest = self.manifest()
        if self.fmt == "webdataset":
            point_rows_into_shards(self.jobs, rows, self.per_shard, self.masks)
        finalize(self.out, self.jobs, rows, manifest)
        manifest["seconds"] = elapsed
        return manifest

    def make_my_part(self, journal: Journal, progress: bool, on_progress: OnProgress) -> None:
        """Make what this ``--shard`` part owns and is not finished: images (folder) or whole shards."""
        out, (i, n) = self.out, self.part
        done_rows = journal.rows()
        state = worker_state(
            self.cfg,
            self.seed,
            self.cfg.size,
            self.renderer,
            self.mode,
            out,
            part_tmp_dir(out, self.part),
            masks=self.masks,
        )
        if self.fmt == "folder":
            mine = [j for j in self.jobs if j.index % n == i]
            kept = {j.index for j in mine if self.image_done(j, done_rows)}
            damaged = {
                j.index for j in mine if j.index in kept
                and not all(file_is_whole(p) for p in image_files(out, j, self.masks))
            }  # fmt: skip
            _say_damaged(len(damaged), "image(s)")
            todo = [j for j in mine if j.index not in kept or j.index in damaged]
            run_folder(todo, len(mine), self.workers, state, journal, progress, on_progress)
            return
        groups = [g for k, g in enumerate(shard_groups(self.jobs, self.per_shard)) if k % n == i]
        done = {p for p, js in groups if (out / p).is_file() and all(j.index in done_rows for j in js)}
        damaged_shards = {p for p in done if not file_is_whole(out / p)}
        _say_damaged(len(damaged_shards), "shard(s)")
        todo_groups = [(p, js) for p, js in groups if p not in done or p in damaged_shards]
        total = sum(len(js) for _, js in groups)
        run_shards(out, todo_groups, total, self.workers, state, journal, progress, on_progress)

    def missing(self, rows: dict[int, dict]) -> int:
        """How many images of the whole set (every part) are not finished yet."""
        if self.fmt == "folder":
            return sum(not self.image_done(j, rows) for j in self.jobs)
        return sum(
            j.index not in rows or not (self.out / p).is_file()
            for p, js in shard_groups(self.jobs, self.per_shard)
            for j in js
        )

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
            "generator": GENERATOR,
            "algorithm": IMAGE_ALGORITHM,
            "metadata": ["metadata.parquet", "metadata.jsonl", "metadata.csv"],
            "rng": "numpy.random.default_rng(SeedSequence([seed, index]))",
            "masks": self.masks,
        }
        if cfg.variation.style != "paper":  # only then: paper manifests stay as they were
            from fungalzsl.synth.style import MIXED_WEIGHTS, STYLE_ALGORITHM

            manifest["style"] = cfg.variation.style
            manifest["style_algorithm"] = STYLE_ALGORITHM
            if cfg.variation.style == "mixed":
                manifest["style_weights"] = MIXED_WEIGHTS
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


def _check_style(cfg: GeneratorPreset, mode: str, renderer: str) -> None:
    """Refuse, before any work, what the photographic styles do not draw."""
    style = cfg.variation.style
    unknown = [c for c in cfg.class_names if c not in PAPER_CLASSES]
    if unknown:
        raise fail(
            f"--style {style} draws the classes {', '.join(PAPER_CLASSES)}; the preset also has {', '.join(unknown)}",
            "use --style paper for your own classes, or a preset with those three",
        )
    if mode != "classes":
        raise fail(f"--style {style} draws --mode classes only", f"drop --mode {mode} or use --style paper")
    if renderer != "fast":
        raise fail(f"--style {style} is drawn with skia only", "drop --renderer matplotlib")


def _say_damaged(n: int, what: str) -> None:
    if n:
        print(
            f"note: {n} {what} recorded as done are empty or damaged (an interrupted write or a power "
            "loss); making them again",
            file=sys.stderr,
        )


def _check_kinds(cfg: GeneratorPreset, mode: str) -> None:
    """The stages of synth.stages are drawn in the paper's style, one class per image."""
    kinds = [c.name for c in cfg.classes if c.kind is not None]
    if kinds and cfg.variation.style != "paper":
        raise fail(
            f"class(es) {', '.join(kinds)} are drawn in the paper style only, not --style {cfg.variation.style}",
            "use --style paper for them",
        )
    if kinds and mode != "classes":
        raise fail(f"class(es) {', '.join(kinds)} cannot be drawn in --mode {mode}", "use --mode classes")


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
