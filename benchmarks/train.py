"""Training speed: ``lite`` samples/s with and without frozen-prefix caching at each unfreeze stage,
the one-off cost of filling the cache, peak RSS, and s/it at batch 32 for the paper's four open_clip
architectures (random init; the whole model trainable, as at the end of the paper's schedule).

    python benchmarks/train.py                    # lite stages + RN50, ViT-B-32, ViT-B-16, ViT-L-14-336
    python benchmarks/train.py --archs            # lite only
    python benchmarks/train.py --stages --archs ViT-L-14-336   # one architecture, merged into the JSON

Prints a table and writes benchmarks/results/train.json. Inputs are random tensors of the real sizes;
text is a fixed 40-word description, so the text tower runs at a realistic length."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from functools import partial
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "train.json"
TEXT = ("Hyphae appear as thin orange branching threads radiating from a central spore, each filament "
        "dividing into finer side branches that thin toward their tips, with a few spores nearby.")  # fmt: skip


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _step(model, opt, loss_fn, img_in, isplit, txt_in, tsplit, labels) -> None:  # type: ignore[no-untyped-def]
    out = loss_fn(
        model.image_head(img_in, isplit), model.text_head(txt_in, tsplit), labels, model.clamped_logit_scale()
    )
    out["loss"].backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _rate(fn, batch: int, steps: int, min_s: float = 3.0) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(samples per wall second from the median step, samples per CPU second over all steps).

    The machine is shared: wall time includes waiting for a core, CPU time (all threads) does not, so
    the CPU-time rate is the one to compare between configurations on a busy machine."""
    fn()
    times: list[float] = []
    t_start, cpu_start = time.perf_counter(), time.process_time()
    while len(times) < steps or time.perf_counter() - t_start < min_s:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    cpu = time.process_time() - cpu_start
    return batch / statistics.median(times), batch * len(times) / cpu


def bench_lite(batch: int, steps: int, stages: list[int]) -> list[dict]:
    from fungalzsl.models import build_model
    from fungalzsl.train.loss import MultiPositiveContrastiveLoss
    from fungalzsl.train.unfreeze import apply_unfreeze

    torch.manual_seed(0)
    model = build_model("lite")
    loss_fn = MultiPositiveContrastiveLoss()
    x = torch.randn(batch, 3, 224, 224)
    texts = [TEXT] * batch
    labels = torch.arange(batch) % 3
    n_img, n_txt = (len(g) for g in model.layer_groups().values())
    rows = []
    for k in stages:
        apply_unfreeze(model, {"image": k, "text": 0})
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5)
        split = n_img - k
        with torch.no_grad():
            t0 = time.perf_counter()
            feats = model.image_trunk(x, split)
            fill = batch / (
                time.perf_counter() - t0
            )  # one-off per image and stage (from a deeper base: less)
            tfeats = model.text_trunk(texts, n_txt)
        cached, cached_cpu = _rate(
            partial(_step, model, opt, loss_fn, feats, split, tfeats, n_txt, labels), batch, steps
        )
        uncached, uncached_cpu = _rate(
            partial(_step, model, opt, loss_fn, x, 0, texts, 0, labels), batch, max(1, steps // 2)
        )
        rows.append({"unfrozen_image_groups": k, "split": split,
                     "cached_samples_per_s": cached, "uncached_samples_per_s": uncached,
                     "cached_samples_per_cpu_s": cached_cpu, "uncached_samples_per_cpu_s": uncached_cpu,
                     "speedup_cpu": cached_cpu / uncached_cpu, "cache_fill_samples_per_s": fill,
                     "peak_rss_mb": _rss_mb()})  # fmt: skip
        print(f"lite  unfrozen {k}: wall {cached:8.1f}/s cached, {uncached:6.1f}/s uncached | "
              f"CPU {cached_cpu:8.1f}/s cached, {uncached_cpu:6.1f}/s uncached  x{cached_cpu / uncached_cpu:5.1f} | "
              f"fill {fill:.1f}/s  rss {_rss_mb():.0f} MB", flush=True)  # fmt: skip
    return rows


def bench_openclip(arch: str, batch: int, steps: int, checkpointing: bool) -> dict:
    import open_clip

    from fungalzsl.models import build_model
    from fungalzsl.train.loss import MultiPositiveContrastiveLoss

    torch.manual_seed(0)
    model = build_model(f"openclip:{arch}")  # no tag: random init, same compute as the pretrained model
    model.train()
    if checkpointing:  # ViT-L/14@336 at batch 32 needs ~40 GB of activations without it
        model.set_grad_checkpointing(True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    size = model.image_size
    x = torch.randn(batch, 3, size, size)
    texts, labels = [TEXT] * batch, torch.arange(batch) % 3
    loss_fn = MultiPositiveContrastiveLoss()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        _step(model, opt, loss_fn, x, 0, texts, 0, labels)
        times.append(time.perf_counter() - t0)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    s_it = min(times[1:] or times)  # first step includes allocator warm-up when there is a second
    print(
        f"{arch:14s} {size}px batch {batch}: {s_it:7.2f} s/it  ({params:.0f} M params, rss {_rss_mb():.0f} MB)",
        flush=True,
    )
    del open_clip
    return {"arch": arch, "image_size": size, "batch": batch, "steps": steps, "s_per_it": s_it, "grad_checkpointing": checkpointing,
            "all_steps_s": times, "params_m": params, "peak_rss_mb": _rss_mb()}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per lite stage")
    ap.add_argument(
        "--stages", type=int, nargs="*", default=[0, 1, 2, 3], help="unfrozen image groups (none: skip lite)"
    )
    ap.add_argument("--archs", nargs="*", default=["RN50", "ViT-B-32", "ViT-B-16", "ViT-L-14-336"])
    ap.add_argument("--arch-steps", type=int, default=2)
    ap.add_argument(
        "--checkpointing", nargs="*", default=["ViT-L-14-336"], help="archs run with grad checkpointing"
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--keep-denormals", action="store_true", help="do not flush subnormal floats (train does)"
    )
    args = ap.parse_args()

    from fungalzsl.runtime import configure_torch_threads

    configure_torch_threads()
    torch.set_flush_denormal(not args.keep_denormals)  # as train_run does
    # Results merge into an existing file, so the lite part and slow architectures can be rerun apart.
    result = json.loads(args.out.read_text()) if args.out.is_file() else {"lite": [], "openclip": []}
    result["machine"] = {
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
    }
    result["batch_size"] = args.batch_size
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.stages:
        load = os.getloadavg()[0]
        result["lite"] = bench_lite(args.batch_size, args.steps, args.stages)
        result["lite_load_avg"] = [load, os.getloadavg()[0]]
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    for arch in args.archs:
        steps = args.arch_steps if arch != "ViT-L-14-336" else 1
        load = os.getloadavg()[0]
        row = bench_openclip(arch, args.batch_size, steps, arch in args.checkpointing)
        row["load_avg"] = [load, os.getloadavg()[0]]
        result["openclip"] = [r for r in result["openclip"] if r["arch"] != arch] + [row]
        args.out.write_text(json.dumps(result, indent=2) + "\n")  # keep partial results of a long run
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
