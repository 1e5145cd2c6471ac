"""The training loop, top to bottom: ``train_run(data, descriptions, out, model_spec, config)``.

Each epoch: apply the unfreezing stage → (re)build the frozen-prefix caches → pair every image with a
fresh random description of its class → contrastive steps on the trainable top → validation Recall@1
→ best/last checkpoints. Runs under ``torchrun`` as DDP (rank 0 alone writes)."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from fungalzsl.config import load_section, validate
from fungalzsl.data import list_split
from fungalzsl.errors import fail
from fungalzsl.io import append_jsonl, atomic_write_json, ensure_writable_dir, read_jsonl, write_jsonl
from fungalzsl.models import build_model, load_weights, save_weights
from fungalzsl.models.registry import write_architecture_files
from fungalzsl.runtime import configure_torch_threads
from fungalzsl.text.records import load_description_set
from fungalzsl.train import checkpoint as ckpt
from fungalzsl.train.catlip import CatlipObjective, build_vocabulary, catlip_val_score
from fungalzsl.train.data import FeatureCache, iter_images
from fungalzsl.train.evaluate import TextFeatures, recall_at_1, wise_ft_state, write_class_embeddings
from fungalzsl.train.loss import CONTRASTIVE_LOSSES, SigmoidContrastiveLoss
from fungalzsl.train.progress import TrainProgress
from fungalzsl.train.settings import TrainConfig
from fungalzsl.train.unfreeze import UnfreezeSchedule, apply_unfreeze, trainable_groups


def resolve_config(
    config: TrainConfig | dict | str | Path | None, overrides: dict[str, Any] | None
) -> TrainConfig:
    """A TrainConfig from a preset path/name, a dict or an object, with non-None overrides applied."""
    if isinstance(config, TrainConfig):
        base = config.model_dump()
    elif isinstance(config, dict):
        base = dict(config)
    else:
        base = load_section(config, "train")
    base.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return validate(TrainConfig, base, f"train settings ({config or 'defaults'})")


def param_groups(name: str, params: list[torch.nn.Parameter], lr: float, wd: float) -> list[dict[str, Any]]:
    """CLIP's convention: no weight decay on gains, biases and the temperature (1-D tensors)."""
    decay = [p for p in params if p.ndim >= 2]
    other = [p for p in params if p.ndim < 2]
    out = [{"params": decay, "weight_decay": wd, "base_lr": lr, "name": f"{name}/decay"}] if decay else []
    return out + (
        [{"params": other, "weight_decay": 0.0, "base_lr": lr, "name": f"{name}/no_decay"}] if other else []
    )


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to ``min_ratio`` of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def setup_distributed(device_opt: str) -> tuple[int, int, torch.device]:
    """(rank, world, device). torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device_opt in ("auto", "cuda")
    if device_opt not in ("auto", "cuda", "cpu") and not device_opt.startswith("cuda:"):
        raise fail(f"unknown device '{device_opt}'", "use auto, cpu, cuda or cuda:N")
    if device_opt.startswith("cuda") and not torch.cuda.is_available():
        raise fail(f"--device {device_opt} asked for, but no CUDA GPU is visible", "use --device cpu")
    device = torch.device(
        device_opt if device_opt.startswith("cuda:") else (f"cuda:{local}" if cuda else "cpu")
    )
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, (dist.get_world_size() if dist.is_initialized() else 1), device


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

    Writes the run directory of docs/architecture.md and returns the summary written to config.json."""
    cfg = resolve_config(config, {**(overrides or {}), "model": model_spec})
    if cfg.objective == "catlip" and (cfg.wise_ft or cfg.wise_ft_alpha is not None):
        raise fail("WiSE-FT is not defined for the catlip objective", "drop --wise-ft or use contrastive")
    rank, world, device = setup_distributed(cfg.device)
    main = rank == 0
    configure_torch_threads()
    # Subnormal floats (AdamW's squared tiny gradients, near-zero activations) run 10-100x slower on
    # x86 CPUs; flushing them to zero changes values below 1e-38 only and made cached epochs ~5x faster.
    torch.set_flush_denormal(True)
    run = Path(out)

    # ---- inputs: images, classes, descriptions --------------------------------------------------
    train_set = list_split(data, "train")
    classes = train_set.classes
    val_set = list_split(data, "val", classes=classes) if (Path(data) / "val").is_dir() else None
    desc = load_description_set(descriptions)
    desc.require_classes(classes)
    unknown = [c for c in desc.classes if c not in classes]
    if unknown:
        raise fail(
            f"description set {descriptions} names class(es) not in the data: {', '.join(unknown)}",
            f"the data's classes are {', '.join(classes)}; fix the set or the data",
        )
    vocab = (
        build_vocabulary(desc.by_class, classes, cfg.catlip_min_count) if cfg.objective == "catlip" else None
    )
    if main:
        ensure_writable_dir(run)  # after the input checks: bad input leaves no run directory behind
    texts = [t for c in classes for t in desc.by_class[c]]
    text_ranges, start = [], 0  # texts of class k are texts[start:end]
    for c in classes:
        text_ranges.append((start, start + len(desc.by_class[c])))
        start += len(desc.by_class[c])

    # ---- resume or fresh start ------------------------------------------------------------------
    last = ckpt.find_last(run) if resume else None
    # A run that never finished an epoch has nothing to lose; anything more needs --resume.
    if not resume and (ckpt.find_last(run) is not None or (run / "model.safetensors").is_file()):
        raise fail(
            f"{run} already holds a training run", "pass --resume to continue it, or choose another --out"
        )
    if last is not None:
        prev = ckpt.load_last(last)[0]
        if (
            prev.get("model") != cfg.model
            or prev.get("classes") != classes
            or prev.get("descriptions_hash") != desc.hash
        ):
            raise fail(
                f"{run} was trained with model {prev.get('model')} on other classes or descriptions",
                "resume with the same --model, --data and --descriptions, or use a new --out",
            )

    # ---- model, schedule, optimiser -------------------------------------------------------------
    torch.manual_seed(cfg.seed)  # also fixes the random init of new heads, so WiSE-FT's θ0 is reproducible
    options = {"embed_dim": cfg.embed_dim, **({"image_size": cfg.image_size} if cfg.image_size else {})}
    options = options if cfg.model == "lite" else {}
    model = build_model(cfg.model, **options).to(device)
    theta0 = (
        {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if cfg.wise_ft or cfg.wise_ft_alpha
        else None
    )
    catlip = CatlipObjective(vocab, classes, model.embed_dim).to(device) if vocab is not None else None
    if cfg.grad_checkpointing and not model.set_grad_checkpointing(True) and main:
        print("note: this backend has no gradient checkpointing; training without it", file=sys.stderr)
    sizes = {t: len(g) for t, g in model.layer_groups().items()}
    unfreeze_max, unfreeze_start = dict(cfg.unfreeze_max), dict(cfg.unfreeze_start)
    if catlip is not None:  # CatLIP has no text loss: the text tower never trains
        unfreeze_max["text"], unfreeze_start["text"] = 0, 0
    schedule = UnfreezeSchedule(sizes, cfg.unfreeze_every, unfreeze_max, unfreeze_start)
    head_lr, body_lr = cfg.lr, cfg.backbone_lr or cfg.lr
    loss_fn = (
        SigmoidContrastiveLoss(init_bias=getattr(model, "init_logit_bias", None))
        if cfg.loss == "sigmoid"
        else CONTRASTIVE_LOSSES[cfg.loss]()
    ).to(device)
    extras = catlip if catlip is not None else loss_fn  # trained tensors outside the model
    heads = [*model.head_parameters(), model.logit_scale, *extras.parameters()]
    opt = torch.optim.AdamW(
        param_groups("head", heads, head_lr, cfg.weight_decay),
        lr=head_lr,
        foreach=True,  # one kernel per group; the CPU default loops over tensors in Python
    )
    in_optimizer: set[str] = set()
    amp_dtype = None
    if device.type == "cuda" and cfg.amp != "off":
        amp_dtype = (
            torch.float16 if cfg.amp == "fp16" or not torch.cuda.is_bf16_supported() else torch.bfloat16
        )
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    # Caches are cut at the deepest split the whole run needs, so images are decoded once.
    final_frozen = schedule.final_frozen(cfg.epochs)
    base = model.cache_split("image", final_frozen["image"]) if cfg.cache else 0
    apply_unfreeze(model, schedule.unfrozen_at(0))
    train_cache = FeatureCache(model, train_set.paths, base, cfg.eval_batch_size, cfg.num_workers, device)
    val_cache = (
        FeatureCache(model, val_set.paths, base, cfg.eval_batch_size, cfg.num_workers, device)
        if val_set
        else None
    )
    text_feats = TextFeatures(model, texts, cfg.eval_batch_size)
    text_frozen_always = final_frozen["text"] == sizes["text"]
    labels_all = torch.tensor(train_set.labels)

    epoch0, step, best, best_epoch, stale, unfrozen = 0, 0, [-math.inf, -math.inf], -1, 0, None
    if last is not None:
        state, tensors = ckpt.load_last(last)
        load_weights(model, last / "model.safetensors")
        epoch0, step = state["epoch"] + 1, state["step"]
        if state.get("stopped"):  # the run had stopped early: resuming only re-finishes it
            epoch0 = cfg.epochs
        best, best_epoch, stale = state["best"], state["best_epoch"], state["stale"]
        # Replay the unfreezing stages so the optimiser's groups are rebuilt in the order they were added.
        for e in range(epoch0):
            for name, params in trainable_groups(model, schedule.unfrozen_at(e)):
                if name not in in_optimizer:
                    in_optimizer.add(name)
                    for g in param_groups(name, params, body_lr, cfg.weight_decay):
                        opt.add_param_group(g)
        ckpt.restore_optimizer(opt, tensors, state["param_groups"])
        extras.load_state_dict({k: v.to(device) for k, v in ckpt.extra_state(tensors).items()})
        ckpt.restore_rng(tensors)
        if main:  # drop log lines of the epoch that was cut short
            write_jsonl(
                run / "metrics.jsonl", [r for r in read_jsonl(run / "metrics.jsonl") if r["epoch"] < epoch0]
            )
    elif main:
        (run / "metrics.jsonl").unlink(missing_ok=True)

    valid = train_cache.scan()
    if main and train_cache.errors:
        shown = "; ".join(train_cache.errors[:5]) + (" …" if len(train_cache.errors) > 5 else "")
        print(
            f"warning: skipped {len(train_cache.errors)} unreadable training image(s): {shown}",
            file=sys.stderr,
        )
    if not bool(valid.any()):
        raise fail(f"no readable training images under {Path(data) / 'train'}", "check the files")
    keep = torch.nonzero(valid).flatten()
    steps_per_epoch = math.ceil(math.ceil(len(keep) / cfg.batch_size) / cfg.grad_accum)
    total_steps = steps_per_epoch * cfg.epochs

    summary: dict[str, Any] = {
        "model": cfg.model,
        "model_options": options,
        "classes": classes,
        "descriptions": {"name": desc.name, "path": str(Path(descriptions).resolve()), "hash": desc.hash},
        "descriptions_hash": desc.hash,
        "image_size": model.image_size,
        "embed_dim": model.embed_dim,
        "data": str(Path(data).resolve()),
        "train": cfg.model_dump(),
        "world_size": world,
        "skipped_images": train_cache.errors,
    }
    if main:
        write_architecture_files(model, run)
        atomic_write_json(run / "config.json", {**summary, "status": "training"})
    writer = _tensorboard(run) if (cfg.tensorboard and main) else None
    progress = TrainProgress(enabled=cfg.progress and main)
    t_start = time.perf_counter()

    for epoch in range(epoch0, cfg.epochs):
        # ---- unfreezing stage: trainable set, optimiser groups, caches -------------------------
        now = schedule.unfrozen_at(epoch)
        apply_unfreeze(model, now)
        if now != unfrozen:
            for name, params in trainable_groups(model, now):
                if name not in in_optimizer:
                    in_optimizer.add(name)
                    for g in param_groups(name, params, body_lr, cfg.weight_decay):
                        opt.add_param_group(g)
            unfrozen = now
        frozen = {t: sizes[t] - now[t] for t in sizes}
        isplit = model.cache_split("image", frozen["image"]) if cfg.cache else 0
        tsplit = model.cache_split("text", frozen["text"]) if cfg.cache else 0
        feats = train_cache.at(isplit)
        tfeats = text_feats.at(tsplit) if catlip is None else None

        # ---- pairs: fresh permutation and fresh description per image (same on every rank) -----
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        order = keep[torch.randperm(len(keep), generator=gen)]
        lo = torch.tensor([text_ranges[y][0] for y in labels_all[order].tolist()])
        hi = torch.tensor([text_ranges[y][1] for y in labels_all[order].tolist()])
        pick = lo + (torch.rand(len(order), generator=gen) * (hi - lo)).long()
        batches = [slice(i, i + cfg.batch_size) for i in range(0, len(order), cfg.batch_size)]
        batches = [b for b in batches if len(order[b]) >= 2]  # a 1-pair batch has no negatives
        local = [(order[b][rank::world], pick[b][rank::world]) for b in batches]
        pixels = (
            None
            if feats is not None
            else iter_images(
                train_set.paths, [i.tolist() for i, _ in local], model.preprocess, cfg.num_workers
            )
        )

        progress.start_epoch(epoch, cfg.epochs, len(local))
        epoch_loss, n_loss, t_epoch = 0.0, 0, time.perf_counter()
        for b, (idx, tidx) in enumerate(local):
            t_step = time.perf_counter()
            if feats is not None:
                x = feats[idx]
            else:  # from disk; a file that broke since the first pass is dropped from this batch
                got, x = next(pixels)
                if len(got) != len(idx):
                    got_set = set(got)
                    keep_pos = [k for k, i in enumerate(idx.tolist()) if i in got_set]
                    idx, tidx = idx[keep_pos], tidx[keep_pos]
            t_in = tfeats[tidx] if tfeats is not None else [texts[i] for i in tidx.tolist()]
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                img = model.image_head(x.to(device, non_blocking=True), isplit)
                if catlip is not None:
                    losses = catlip.loss(img, labels_all[idx].to(device))
                else:
                    txt = model.text_head(t_in.to(device) if torch.is_tensor(t_in) else t_in, tsplit)
                    losses = loss_fn(img, txt, labels_all[idx].to(device), model.clamped_logit_scale())
            scaler.scale(losses["loss"] / cfg.grad_accum).backward()
            if (b + 1) % cfg.grad_accum and b + 1 != len(local):
                continue
            # ---- optimiser step -----------------------------------------------------------------
            lr_now = lr_factor(step, total_steps, cfg.warmup_steps, cfg.min_lr_ratio)
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * lr_now
            trainable = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            if world > 1:  # average gradients: DDP's all-reduce, done by hand (encode_* bypass forward)
                for p in trainable:
                    dist.all_reduce(p.grad)
                    p.grad /= world
            scaler.unscale_(opt)
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            step += 1
            loss_val = float(losses["loss"].detach())
            epoch_loss, n_loss = epoch_loss + loss_val, n_loss + 1
            s_it = time.perf_counter() - t_step
            progress.advance(loss=loss_val, lr=head_lr * lr_now, s_it=s_it)
            if main and (step % cfg.log_every == 0 or b + 1 == len(local)):
                rec = {
                    "type": "step", "epoch": epoch, "step": step, "loss": loss_val,
                    "loss_image": float(losses["loss_image"].detach()), "loss_text": float(losses["loss_text"].detach()),
                    "lr": head_lr * lr_now, "logit_scale": float(model.clamped_logit_scale().detach()), "s_per_it": s_it,
                }  # fmt: skip
                append_jsonl(run / "metrics.jsonl", [rec])
                if writer:
                    writer.add_scalar("train/loss", loss_val, step)
        progress.end_epoch()

        # ---- validation Recall@1 with the training description set ---------------------------
        val = val_conf = None
        if val_cache is not None and catlip is not None:  # the head-derived zero-shot classifier
            val, val_conf = catlip_val_score(catlip, model, val_cache, isplit, val_set.labels, cfg)
            apply_unfreeze(model, now)
        elif val_cache is not None:
            val, val_conf = recall_at_1(
                model, val_cache, isplit, text_feats, tsplit, val_set.labels, desc.by_class, classes, cfg
            )
            apply_unfreeze(model, now)  # back to train modes after eval
        # Recall@1 saturates on easy data; ties go to the more confident epoch (mean p(true class)).
        score = [val, val_conf] if val is not None else [-epoch_loss, 0.0]  # no val: lowest loss
        improved = score > best
        if improved:
            best, best_epoch, stale = score, epoch, 0
        else:
            stale += 1
        rec = {
            "type": "epoch", "epoch": epoch, "step": step, "train_loss": epoch_loss / max(1, n_loss),
            "val_recall@1": val, "val_p_true": val_conf, "unfrozen": now, "cached_split": {"image": isplit, "text": tsplit},
            "epoch_s": time.perf_counter() - t_epoch, "best": improved,
        }  # fmt: skip
        if main:
            append_jsonl(run / "metrics.jsonl", [rec])
            if writer and val is not None:
                writer.add_scalar("val/recall@1", val, epoch)
            if improved:
                save_weights(model, run / "model.safetensors", {"epoch": str(epoch)})
                if catlip is not None:
                    catlip.save_head(run)
            state = {
                "model": cfg.model, "classes": classes, "descriptions_hash": desc.hash, "epoch": epoch,
                "step": step, "best": best, "best_epoch": best_epoch, "stale": stale, "unfrozen": now,
                "stopped": bool(cfg.patience and stale >= cfg.patience),
            }  # fmt: skip
            ckpt.save_last(run, model, opt, state, extras.state_dict())
            progress.log_epoch(rec)
        if on_epoch_end is not None:
            on_epoch_end(rec)
        if cfg.patience and stale >= cfg.patience:
            if main:
                print(f"early stop: no val gain for {stale} epochs", file=sys.stderr)
            break

    # ---- finish: best weights, class embeddings, WiSE-FT, config -------------------------------
    wall = time.perf_counter() - t_start
    if world > 1:
        dist.barrier()  # rank 0 has written the best weights
    load_weights(model, run / "model.safetensors")
    model.eval()
    result = {**summary, "status": "done", "best_epoch": best_epoch, "val_recall@1": best[0] if val_cache else None,
              "epochs_run": epoch + 1 if cfg.epochs > epoch0 else epoch0, "train_wall_s": wall}  # fmt: skip
    if main:
        if theta0 is not None:
            result["wise_ft"] = wise_ft_state(
                model, theta0, cfg, run, val_cache, text_feats, final_frozen, val_set, desc, classes
            )
        if catlip is not None:  # classifier from the best epoch's head; vocabulary beside it
            catlip.load_head(run)
            catlip.write(run)
            result["catlip_vocabulary_size"] = len(catlip.vocab["items"])
        else:
            cache = text_feats if text_frozen_always and cfg.cache else None
            write_class_embeddings(model, desc.by_class, classes, run / "class_embeddings.safetensors", cache)
        if isinstance(loss_fn, SigmoidContrastiveLoss) and catlip is None:
            result["logit_bias"] = float(loss_fn.logit_bias.detach())
        atomic_write_json(run / "config.json", result)
    if writer:
        writer.close()
    if world > 1:
        dist.barrier()
    return result


def _tensorboard(run: Path):  # type: ignore[no-untyped-def]
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: only when the tensorboard package is installed
        return None
    return SummaryWriter(str(run / "tensorboard"))
