"""The training loop, top to bottom: ``train_run(data, descriptions, out, model_spec, config)``.

    setup   inputs, objective, model, schedule, optimiser, caches           → Trainer
    resume  RUN/last/ read once: weights, optimiser groups and moments, RNG  → TrainState
    begin   first pass over the images, config.json "training", logs
    for each epoch:
        enter_stage      the unfreezing stage: trainable set, optimiser groups, cached splits
        train_one_epoch  fresh image–description pairs; per batch train_step, then optimizer_step
        validate         the objective's zero-shot Recall@1 on val/
        end_epoch        best/stale, metrics.jsonl, best weights, RUN/last/
    finish  best weights back, the objective's class embeddings (WiSE-FT), config.json "done"

What is specific to an objective (contrastive or CatLIP) sits behind ``train.objectives``. Runs under
``torchrun`` as DDP: every rank trains, rank 0 alone writes."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from fungalzsl.errors import fail
from fungalzsl.io import append_jsonl, atomic_write_json, ensure_writable_dir, read_jsonl, write_jsonl
from fungalzsl.models import build_model, load_weights, save_weights
from fungalzsl.models.base import TwoTowerModel
from fungalzsl.models.lora import merge_lora
from fungalzsl.models.registry import write_architecture_files
from fungalzsl.progress import step
from fungalzsl.rundir import CONFIG_FILE, METRICS_FILE, MODEL_FILE
from fungalzsl.runtime import configure_torch_threads
from fungalzsl.train import checkpoint as ckpt
from fungalzsl.train.adapter import attach_adapter, footprint, unfreeze_settings
from fungalzsl.train.augment import AugmentedImages, epoch_views
from fungalzsl.train.distributed import setup_distributed
from fungalzsl.train.inputs import FeatureCache, TrainInputs, draw_pairs, iter_images, read_inputs
from fungalzsl.train.objectives import TrainingObjective, objective_for
from fungalzsl.train.optim import (
    add_unfrozen_groups,
    autocast_dtype,
    build_optimizer,
    lr_factor,
    optimizer_step,
)
from fungalzsl.train.progress import TrainProgress
from fungalzsl.train.records import epochs_from_one, final_loss
from fungalzsl.train.settings import TrainConfig, resolve_config
from fungalzsl.train.state import ResumePoint, TrainState, open_resume, run_identity
from fungalzsl.train.unfreeze import UnfreezeSchedule, apply_unfreeze, text_head_parameters


@dataclass
class Trainer:
    """What a run sets up once and every phase reads (``begin`` fills the last group of fields)."""

    cfg: TrainConfig
    run: Path
    rank: int
    world: int
    device: torch.device
    inputs: TrainInputs
    objective: TrainingObjective
    model: TwoTowerModel
    model_options: dict[str, Any]
    schedule: UnfreezeSchedule
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    train_cache: FeatureCache
    val_cache: FeatureCache | None
    final_frozen: dict[str, int]  # frozen groups per tower in the last epoch: where caches are cut
    resume_point: ResumePoint | None
    identity: dict[str, Any]  # what a resume must match (state.run_identity), computed once
    keep: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))  # readable
    total_steps: int = 0
    summary: dict[str, Any] = field(default_factory=dict)  # config.json's fields before the finish
    writer: Any = None  # tensorboard SummaryWriter, when asked for and installed
    progress: TrainProgress = field(default_factory=lambda: TrainProgress(enabled=False))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def head_lr(self) -> float:
        return self.cfg.lr

    @property
    def body_lr(self) -> float:  # unfrozen layer groups
        return self.cfg.backbone_lr or self.cfg.lr


@dataclass(frozen=True)
class Stage:
    """One epoch's unfreezing stage: trainable top groups and where the frozen prefixes are cut."""

    epoch: int
    unfrozen: dict[str, int]
    isplit: int  # image groups computed by the cache (0: every step runs from pixels)
    tsplit: int  # text groups computed by the cache (0: from strings)
    feats: torch.Tensor | None  # the training images' cached features at isplit


@dataclass
class EpochStats:
    loss_sum: float = 0.0  # sum of the optimiser steps' (last micro-batch) losses
    floor_sum: float = 0.0  # and of those batches' loss floors (multi-positive loss only)
    steps: int = 0
    started: float = field(default_factory=time.perf_counter)


def train_run(
    data: str | Path,
    descriptions: str | Path,
    out: str | Path,
    model_spec: str | None = None,
    config: TrainConfig | dict | str | Path | None = None,
    *,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model_spec`` on ``data`` (ImageFolder with train[/val]) with a description set.

    Writes the run directory of docs/architecture.md and returns the summary written to config.json.
    ``on_epoch_end`` gets each epoch's metrics record after its checkpoint is written."""
    cfg = resolve_config(config, {**(overrides or {}), "model": model_spec})
    t = setup(data, descriptions, Path(out), cfg, resume)
    state = resume_state(t)
    begin(t)
    t_start = time.perf_counter()
    for epoch in range(state.epoch + 1, cfg.epochs):
        stage = enter_stage(t, state, epoch)
        stats = train_one_epoch(t, state, stage)
        val = validate(t, stage)
        rec = end_epoch(t, state, stage, stats, val)
        if on_epoch_end is not None:
            on_epoch_end(rec)
        if state.stopped:
            if t.main:
                print(f"early stop: no val gain for {state.stale} epochs", file=sys.stderr)
            break
    return finish(t, state, time.perf_counter() - t_start)


def setup(data: str | Path, descriptions: str | Path, run: Path, cfg: TrainConfig, resume: bool) -> Trainer:
    """Everything before the first step, in an order that fails early and cheaply: settings, then
    inputs (no run directory is made for bad input), then the resume point, then the model."""
    objective_type = objective_for(cfg)
    rank, world, device = setup_distributed(cfg.device)
    configure_torch_threads()
    # Subnormal floats (AdamW's squared tiny gradients, near-zero activations) run 10-100x slower on
    # x86 CPUs; flushing them to zero changes values below 1e-38 only and made cached epochs ~5x faster.
    torch.set_flush_denormal(True)
    inputs = read_inputs(data, descriptions, cfg.captions, cfg.caption_share)
    objective = objective_type(cfg, inputs)
    identity = run_identity(cfg.model, inputs)
    point = open_resume(run, resume, identity)  # before mkdir: a mistyped --resume --out makes nothing
    if rank == 0:
        ensure_writable_dir(run)  # after the input checks: bad input leaves no run directory behind

    torch.manual_seed(cfg.seed)  # also fixes the random init of new heads, so WiSE-FT's θ0 is reproducible
    options = {"embed_dim": cfg.embed_dim, **({"image_size": cfg.image_size} if cfg.image_size else {})}
    options = options if cfg.model == "lite" else {}
    with step(f"starting model {cfg.model}", now=True, enabled=rank == 0):
        model = build_model(cfg.model, **options).to(device)
    objective.bind(model, device)
    attach_adapter(model, cfg)  # LoRA, after bind: WiSE-FT's θ0 is the plain model
    if cfg.grad_checkpointing and not model.set_grad_checkpointing(True) and rank == 0:
        print("note: this backend has no gradient checkpointing; training without it", file=sys.stderr)
    sizes = {tower: len(groups) for tower, groups in model.layer_groups().items()}
    limits = objective.unfreeze_limits(*unfreeze_settings(model, cfg))
    schedule = UnfreezeSchedule(sizes, cfg.unfreeze_every, *limits)
    locked = {id(p) for p in text_head_parameters(model)} if cfg.lock_text else set()
    heads = [
        p
        for p in [*model.head_parameters(), model.logit_scale, *objective.parameters()]
        if id(p) not in locked
    ]
    opt = build_optimizer(heads, cfg.lr, cfg.weight_decay)
    amp_dtype = autocast_dtype(device, cfg.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    # Caches are cut at the deepest split the whole run needs, so images are decoded once.
    final_frozen = schedule.final_frozen(cfg.epochs)
    base = model.cache_split("image", final_frozen["image"]) if cfg.cache else 0
    apply_unfreeze(model, schedule.unfrozen_at(0))

    def cache(split: Any, augment: AugmentedImages | None = None) -> FeatureCache:
        return FeatureCache(model, split.paths, base, cfg.eval_batch_size, cfg.num_workers, device, augment)

    views = None
    if cfg.augment is not None:  # training views only: validation keeps the eval transform
        views = AugmentedImages(inputs.train_set.paths, model.preprocess, cfg.augment, model.image_size,
                                cfg.seed, cfg.augment.views)  # fmt: skip
    train_cache = cache(inputs.train_set, views)
    val_cache = cache(inputs.val_set) if inputs.val_set else None
    return Trainer(
        cfg, run, rank, world, device, inputs, objective, model, options, schedule, opt, scaler,
        amp_dtype, train_cache, val_cache, final_frozen, point, identity,
    )  # fmt: skip


def resume_state(t: Trainer) -> TrainState:
    """A fresh TrainState, or the one of RUN/last/ with the model, optimiser, the objective's tensors
    and the RNG put back as they were after that epoch."""
    point = t.resume_point
    if point is None:
        if t.main:
            (t.run / METRICS_FILE).unlink(missing_ok=True)
        return TrainState()
    state = point.state(t.cfg.epochs)
    load_weights(t.model, point.dir / MODEL_FILE)
    # Replay the unfreezing stages so the optimiser's groups are rebuilt in the order they were added.
    for e in range(state.epoch + 1):
        add_unfrozen_groups(t.opt, t.model, t.schedule.unfrozen_at(e), t.body_lr, t.cfg.weight_decay)
    ckpt.restore_optimizer(t.opt, point.tensors, point.saved["param_groups"])
    t.objective.load_state_dict({k: v.to(t.device) for k, v in ckpt.extra_state(point.tensors).items()})
    ckpt.restore_rng(point.tensors)
    if t.main:  # drop log lines of the epoch that was cut short
        recs = epochs_from_one(read_jsonl(t.run / METRICS_FILE))
        write_jsonl(t.run / METRICS_FILE, [r for r in recs if r["epoch"] <= state.epoch + 1])
    return state


def begin(t: Trainer) -> None:
    """The first pass over the training images (unreadable ones are skipped for the whole run), the
    step count of the lr schedule, config.json with status "training", and the logs.

    A disk pass draws from the global RNG (DataLoader seeding). A fresh run draws it here (and for
    val/ in its first validation); a resumed run makes both passes under a forked RNG, so training
    continues from the RNG state that last/ saved, as the uninterrupted run did (dropout masks)."""
    cfg, inputs, cache = t.cfg, t.inputs, t.train_cache
    if t.resume_point is None:
        valid = cache.scan()
    else:
        with torch.random.fork_rng(devices=[]):
            valid = cache.scan()
            if t.val_cache is not None:
                t.val_cache.scan()
    if t.main and cache.errors:
        shown = "; ".join(cache.errors[:5]) + (" …" if len(cache.errors) > 5 else "")
        print(f"warning: skipped {len(cache.errors)} unreadable training image(s): {shown}", file=sys.stderr)
    if not bool(valid.any()):
        raise fail(f"no readable training images under {inputs.data / 'train'}", "check the files")
    t.keep = torch.nonzero(valid).flatten()
    steps_per_epoch = math.ceil(math.ceil(len(t.keep) / cfg.batch_size) / cfg.grad_accum)
    t.total_steps = steps_per_epoch * cfg.epochs
    desc = inputs.desc
    t.summary = {
        "model": cfg.model,
        "model_options": t.model_options,
        "classes": inputs.classes,
        "descriptions": {"name": desc.name, "path": str(inputs.descriptions.resolve()), "hash": desc.hash},
        "descriptions_hash": desc.hash,
        "image_size": t.model.image_size,
        "embed_dim": t.model.embed_dim,
        "data": str(inputs.data.resolve()),
        "data_fingerprint": t.identity["data_fingerprint"],
        "train": cfg.model_dump(),
        "world_size": t.world,
        "skipped_images": cache.errors,
        "lora": getattr(t.model, "adapter_settings", None),
    }
    if t.main:
        write_architecture_files(t.model, t.run)
        atomic_write_json(t.run / CONFIG_FILE, {**t.summary, "status": "training"})
    t.writer = _tensorboard(t.run) if (cfg.tensorboard and t.main) else None
    t.progress = TrainProgress(enabled=cfg.progress and t.main)


def enter_stage(t: Trainer, state: TrainState, epoch: int) -> Stage:
    """Apply ``epoch``'s unfreezing stage: trainable set, new optimiser groups, cached features."""
    cfg, model = t.cfg, t.model
    now = t.schedule.unfrozen_at(epoch)
    apply_unfreeze(model, now)
    add_unfrozen_groups(t.opt, model, now, t.body_lr, cfg.weight_decay)
    state.unfrozen = now
    frozen = t.schedule.frozen_at(epoch)
    isplit = model.cache_split("image", frozen["image"]) if cfg.cache else 0
    tsplit = model.cache_split("text", frozen["text"]) if cfg.cache else 0
    feats = t.train_cache.at(isplit)
    t.objective.start_stage(tsplit)
    return Stage(epoch, now, isplit, tsplit, feats)


def train_one_epoch(t: Trainer, state: TrainState, stage: Stage) -> EpochStats:
    """Every batch of the epoch's pairs through ``train_step``; an optimiser step every
    ``grad_accum`` batches (and after the last)."""
    cfg, cache = t.cfg, t.train_cache
    pairs = draw_pairs(t.inputs, t.keep, cfg.batch_size, cfg.seed, stage.epoch, t.rank, t.world)
    rows = cache_rows(t, stage.epoch)
    pixels = None
    if stage.feats is None:
        n = len(cache.paths)
        batches = [rows[i].tolist() for i, _ in pairs]
        views = iter_images(cache.paths, batches, t.model.preprocess, cfg.num_workers, None, cache.augment)
        pixels = (([r % n for r in got], xs) for got, xs in views)  # back from view rows to images
    t.progress.start_epoch(stage.epoch, cfg.epochs, len(pairs))
    stats = EpochStats()
    for b, (idx, tidx) in enumerate(pairs):
        t_step = time.perf_counter()
        losses = train_step(t, stage, idx, tidx, pixels, rows)
        if (b + 1) % cfg.grad_accum and b + 1 != len(pairs):
            continue
        lr_scale = lr_factor(state.step, t.total_steps, cfg.warmup_steps, cfg.min_lr_ratio)
        optimizer_step(t.opt, t.scaler, lr_scale, cfg.grad_clip, t.world)
        state.step += 1
        log_step(t, state, stage, stats, losses, lr_scale, time.perf_counter() - t_step, b + 1 == len(pairs))
    t.progress.end_epoch()
    return stats


def train_step(
    t: Trainer,
    stage: Stage,
    idx: torch.Tensor,
    tidx: torch.Tensor,
    pixels: Iterator[tuple[list[int], torch.Tensor]] | None,
    rows: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Forward and backward of one batch: images ``idx`` (shown as cache rows ``rows[idx]``) with
    descriptions ``tidx`` (a 1/grad_accum share of the step's gradient)."""
    if stage.feats is not None:
        x = stage.feats[rows[idx]]
    else:  # from disk; a file that broke since the first pass is dropped from this batch
        assert pixels is not None
        got, x = next(pixels)
        if len(got) != len(idx):
            got_set = set(got)
            keep_pos = [k for k, i in enumerate(idx.tolist()) if i in got_set]
            idx, tidx = idx[keep_pos], tidx[keep_pos]
    with torch.autocast(t.device.type, dtype=t.amp_dtype, enabled=t.amp_dtype is not None):
        image = t.model.image_head(x.to(t.device, non_blocking=True), stage.isplit)
        losses = t.objective.loss(t.model, image, tidx, t.inputs.train_labels[idx].to(t.device), idx)
    t.scaler.scale(losses["loss"] / t.cfg.grad_accum).backward()
    return losses


def cache_rows(t: Trainer, epoch: int) -> torch.Tensor:
    """The cache row each training image shows in ``epoch``: itself, or with augmentation one of its
    views (``view · N + image``), the same on every rank and after a resume."""
    n, cfg = len(t.train_cache.paths), t.cfg
    if cfg.augment is None:
        return torch.arange(n)
    return epoch_views(cfg.seed, epoch, n, cfg.augment.views) * n + torch.arange(n)


def log_step(
    t: Trainer, state: TrainState, stage: Stage, stats: EpochStats, losses: dict[str, torch.Tensor],
    lr_scale: float, s_it: float, last: bool,
) -> None:  # fmt: skip
    """Count the step's loss; a metrics.jsonl line every ``log_every`` steps and at the epoch's end."""
    loss = float(losses["loss"].detach())
    stats.loss_sum, stats.steps = stats.loss_sum + loss, stats.steps + 1
    stats.floor_sum += float(losses["floor"]) if "floor" in losses else math.nan
    lr = t.head_lr * lr_scale
    t.progress.advance(loss=loss, lr=lr, s_it=s_it)
    if t.main and (state.step % t.cfg.log_every == 0 or last):
        rec = {
            "type": "step", "epoch": stage.epoch + 1, "step": state.step, "loss": loss,
            "loss_image": float(losses["loss_image"].detach()), "loss_text": float(losses["loss_text"].detach()),
            "lr": lr, "logit_scale": float(t.model.clamped_logit_scale().detach()), "s_per_it": s_it,
        }  # fmt: skip
        append_jsonl(t.run / METRICS_FILE, [rec])
        if t.writer:
            t.writer.add_scalar("train/loss", loss, state.step)


def validate(t: Trainer, stage: Stage) -> tuple[float | None, float | None]:
    """(val Recall@1, val mean p(true class)) with the training description set; (None, None)
    without a val split."""
    if t.val_cache is None:
        return None, None
    score = t.objective.validate(t.model, t.val_cache, stage.isplit, stage.tsplit)
    apply_unfreeze(t.model, stage.unfrozen)  # back to train modes after eval
    return score


def end_epoch(
    t: Trainer, state: TrainState, stage: Stage, stats: EpochStats, val: tuple[float | None, float | None]
) -> dict[str, Any]:
    """Score the epoch, log it, save the best weights and RUN/last/; returns the metrics record."""
    recall, p_true = val
    score = [recall, p_true] if recall is not None else [-stats.loss_sum, 0.0]  # no val: lowest loss
    improved = state.end_epoch(stage.epoch, score, t.cfg.patience)
    rec = {
        "type": "epoch", "epoch": stage.epoch + 1, "step": state.step, "train_loss": stats.loss_sum / max(1, stats.steps),
        "train_loss_floor": _mean_or_none(stats.floor_sum, stats.steps),
        "val_recall@1": recall, "val_p_true": p_true, "unfrozen": stage.unfrozen,
        "cached_split": {"image": stage.isplit, "text": stage.tsplit},
        "epoch_s": time.perf_counter() - stats.started, "best": improved,
    }  # fmt: skip
    if t.main:
        append_jsonl(t.run / METRICS_FILE, [rec])
        if t.writer and recall is not None:
            t.writer.add_scalar("val/recall@1", recall, stage.epoch)
        if improved:
            save_weights(t.model, t.run / MODEL_FILE, {"epoch": str(stage.epoch + 1)})
            t.objective.save_best(t.run)
        ckpt.save_last(t.run, t.model, t.opt, state.to_json(t.identity), t.objective.state_dict())
        t.progress.log_epoch(rec)
    return rec


def finish(t: Trainer, state: TrainState, wall: float) -> dict[str, Any]:
    """Load the best weights, let the objective write its class embeddings (and WiSE-FT), write
    config.json with status "done" and return it."""
    if t.world > 1:
        dist.barrier()  # rank 0 has written the best weights
    cost = footprint(t.opt, t.model, t.device)
    merge_lora(t.model)  # adapters folded in: the plain model that model.safetensors holds
    load_weights(t.model, t.run / MODEL_FILE)
    t.model.eval()
    result = {
        **t.summary, "status": "done", "best_epoch": state.best_epoch + 1, "epoch_base": 1,
        "val_recall@1": state.best[0] if t.val_cache is not None else None,
        "epochs_run": state.epoch + 1, "train_wall_s": wall, **cost,
    }  # fmt: skip
    if t.main:
        result.update(final_loss(t.run))
        t.progress.log_finish(result, min(t.cfg.batch_size, len(t.keep)), len(t.inputs.classes))
        result.update(t.objective.finish(t.model, t.run, t.val_cache, t.final_frozen))
        atomic_write_json(t.run / CONFIG_FILE, result)
    if t.writer:
        t.writer.close()
    if t.world > 1:
        dist.barrier()
    return result


def _mean_or_none(total: float, n: int) -> float | None:
    return None if n == 0 or math.isnan(total) else total / n


def _tensorboard(run: Path):  # type: ignore[no-untyped-def]
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: only when the tensorboard package is installed
        return None
    return SummaryWriter(str(run / "tensorboard"))
