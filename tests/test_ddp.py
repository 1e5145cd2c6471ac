"""DDP on CPU (gloo, 2 processes): the gathered loss equals the single-process loss on the same global
batch, gradients match after averaging, and a 2-process ``torchrun`` training run works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from fungalzsl.train.loss import MultiPositiveContrastiveLoss
from tiny_data import make_dataset, make_descriptions

REPO = Path(__file__).resolve().parents[1]


def _global_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(8, 5, generator=g),
        torch.randn(8, 5, generator=g),
        torch.tensor([0, 1, 2, 0, 0, 1, 2, 2]),
    )


def _worker(rank: int, world: int, store: str, out: str) -> None:
    # a file rendezvous: no TCP port to race for on a machine where other test runs start servers
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    img_raw, txt_raw, labels = _global_batch()
    # a linear "tower" per modality, replicated; each rank sees its shard of the global batch
    torch.manual_seed(1)
    w_img, w_txt = torch.nn.Linear(5, 4), torch.nn.Linear(5, 4)
    scale = torch.tensor(3.0, requires_grad=True)
    shard = slice(rank, None, world)
    img = F.normalize(w_img(img_raw[shard]), dim=-1)
    txt = F.normalize(w_txt(txt_raw[shard]), dim=-1)
    loss = MultiPositiveContrastiveLoss()(img, txt, labels[shard], scale)["loss"]
    loss.backward()
    grads = [p.grad for p in (*w_img.parameters(), *w_txt.parameters(), scale)]
    for gr in grads:  # what the trainer does instead of DDP's hooks
        dist.all_reduce(gr)
        gr /= world
    if rank == 0:
        torch.save({"loss": loss.detach(), "grads": [gr.clone() for gr in grads]}, out)
    dist.barrier()
    dist.destroy_process_group()
    # Interpreter shutdown in a spawned child intermittently aborts in gloo's C++ destructors
    # ("terminate called without an active exception", SIGABRT) after all the work is done and
    # saved; leave without running them.
    os._exit(0)


def test_gathered_loss_and_gradients_equal_single_process(tmp_path: Path) -> None:
    out = str(tmp_path / "rank0.pt")
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), out), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)

    img_raw, txt_raw, labels = _global_batch()
    torch.manual_seed(1)
    w_img, w_txt = torch.nn.Linear(5, 4), torch.nn.Linear(5, 4)
    scale = torch.tensor(3.0, requires_grad=True)
    # single process: rank-major order of the same samples (the loss is permutation invariant)
    order = torch.cat([torch.arange(8)[r::2] for r in range(2)])
    img = F.normalize(w_img(img_raw[order]), dim=-1)
    txt = F.normalize(w_txt(txt_raw[order]), dim=-1)
    loss = MultiPositiveContrastiveLoss(gather=False)(img, txt, labels[order], scale)["loss"]
    loss.backward()
    torch.testing.assert_close(got["loss"], loss.detach(), rtol=1e-5, atol=1e-6)
    for g_ddp, p in zip(got["grads"], (*w_img.parameters(), *w_txt.parameters(), scale)):
        torch.testing.assert_close(g_ddp, p.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_two_process_torchrun_run_matches_the_single_process_run(tmp_path: Path) -> None:
    from fungalzsl.train.loop import train_run

    data = make_dataset(tmp_path / "data", {"train": 4, "val": 2})
    desc = make_descriptions(tmp_path / "d.jsonl")
    cfg = tmp_path / "tiny.yaml"
    # heads only: BatchNorm of unfrozen conv groups would use per-rank batch statistics (no SyncBN)
    cfg.write_text("train:\n  model: lite\n  image_size: 32\n  unfreeze_every: 0\n  lr: 0.01\n")
    env = {**os.environ, "FUNGALZSL_NO_REEXEC": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "fungalzsl", "train", "--data", str(data), "--descriptions", str(desc), "--out", str(tmp_path / "ddp"),
           "--config", str(cfg), "--epochs", "2", "--batch-size", "6", "--quiet"]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    config = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert config["world_size"] == 2 and config["status"] == "done"
    ddp = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    # rank 0 alone writes (one line per record): 2 steps per epoch (12 images, global batch 6)
    assert [(r["epoch"], r["step"]) for r in ddp if r["type"] == "epoch"] == [(1, 2), (2, 4)]
    assert len({(r["type"], r["step"]) for r in ddp}) == len(ddp)

    # the same global batches in one process: same losses, same validation
    single_cfg = {"model": "lite", "image_size": 32, "unfreeze_every": 0, "lr": 0.01, "epochs": 2,
                  "batch_size": 6, "progress": False}  # fmt: skip
    train_run(data, desc, tmp_path / "single", None, single_cfg)
    one = [json.loads(x) for x in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip([r for r in ddp if r["type"] == "epoch"], [r for r in one if r["type"] == "epoch"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_p_true"] == pytest.approx(b["val_p_true"], rel=1e-4)
        assert a["val_recall@1"] == b["val_recall@1"]
