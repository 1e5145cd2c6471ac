"""Training reproduces numbers recorded before the loop was restructured (issue 11).

``tests/train_reference.json`` was measured with the trainer as it stood at commit 23d505b (one 338-line
``train_run``), by running this file as a script with that commit's sources first on the path:

    git worktree add /tmp/orig-train 23d505b
    PYTHONPATH=/tmp/orig-train/src python tests/test_train_reference.py > tests/train_reference.json

Each run is tiny (24 training images of 32 px, 3 epochs, an unfreezing stage per epoch) and pinned to
the CPU. Any change to what training computes — the pairs drawn, the order of RNG draws, the
optimiser's groups, a loss, the resume replay, what is saved — moves these numbers by far more than
the tolerance, which only absorbs float summation differences between CPUs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from fungalzsl.train.loop import train_run
from tiny_data import make_dataset, make_descriptions

TOL = {"rel": 1e-4, "abs": 1e-5}
CFG = {"epochs": 3, "batch_size": 6, "unfreeze_every": 1, "unfreeze_max": {"image": 2, "text": 1},
       "image_size": 32, "embed_dim": 16, "progress": False, "lr": 5e-3, "backbone_lr": 1e-3,
       "warmup_steps": 2, "device": "cpu"}  # fmt: skip
RUNS = {
    "contrastive": {},
    "sigmoid": {"loss": "sigmoid"},
    "catlip": {"objective": "catlip"},
    # text kept frozen so that the resumed run also equals the uninterrupted one (no text dropout)
    "resumed": {"unfreeze_max": {"image": 2, "text": 0}},
}
WEIGHTS = ("image_proj.weight", "text_proj.weight", "logit_scale", "visual.conv_head.weight",
           "text.encoder.layer.5.output.dense.weight")  # fmt: skip


class _Crash(Exception):
    pass


def _crash_after_first_epoch(rec: dict) -> None:
    if rec["epoch"] == 1:  # counted from 1
        raise _Crash


def _stats(path: Path, keep: Callable[[str], bool] = lambda key: True) -> dict[str, list[float]]:
    """[sum, sum of |x|] (float64) of the tensors of a safetensors file whose key ``keep`` accepts."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k).double() for k in f.keys() if keep(k)}  # noqa: SIM118
    return {k: [float(v.sum()), float(v.abs().sum())] for k, v in tensors.items()}


SUMMARY = ("best_epoch", "val_recall@1", "epochs_run", "logit_bias", "catlip_vocabulary_size")
STEP = ("step", "loss", "loss_image", "lr", "logit_scale")
EPOCH = ("train_loss", "val_recall@1", "val_p_true", "best")


def _numbers(run: Path, result: dict) -> dict:
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    optimizer = _stats(run / "last" / "optimizer.safetensors", lambda k: k.startswith("opt."))
    return {
        # the reference counts epochs from 0, config.json (since "epoch_base": 1) from 1
        "summary": {k: result.get(k) for k in SUMMARY} | {"best_epoch": result["best_epoch"] - 1},
        "steps": [[r[k] for k in STEP] for r in recs if r["type"] == "step"],
        "epochs": [[r[k] for k in EPOCH] for r in recs if r["type"] == "epoch"],
        "weights": _stats(run / "model.safetensors", WEIGHTS.__contains__),
        "last_weights": _stats(run / "last" / "model.safetensors", WEIGHTS.__contains__),
        # the head group's AdamW moments, how many tensors AdamW holds, the objective's own tensors
        "optimizer": {k: v for k, v in optimizer.items() if k.startswith("opt.0.")}
        | {"n_tensors": len(optimizer)}
        | _stats(run / "last" / "optimizer.safetensors", lambda k: k.startswith("extra.")),
        "class_embeddings": _stats(run / "class_embeddings.safetensors")["embeddings"],
    }


def measure(root: Path) -> dict[str, dict]:
    """Train every run of RUNS under ``root`` and return the numbers REFERENCE records."""
    data = make_dataset(root / "data", {"train": 8, "val": 4})
    desc = make_descriptions(root / "d.jsonl")
    out: dict[str, dict] = {}
    for name, extra in RUNS.items():
        run, cfg = root / name, {**CFG, **extra}
        if name == "resumed":  # killed after epoch 0's checkpoint, resumed into epoch 1's new stage
            with pytest.raises(_Crash):
                train_run(data, desc, run, "lite", cfg, on_epoch_end=_crash_after_first_epoch)
            result = train_run(data, desc, run, "lite", cfg, resume=True)
        else:
            result = train_run(data, desc, run, "lite", cfg)
        out[name] = _numbers(run, result)
    return out


REFERENCE = Path(__file__).with_name("train_reference.json")  # the original trainer's numbers


def _assert_close(got: object, ref: object, where: str) -> None:
    """Recursive comparison: floats within TOL, everything else (ints, bools, None, keys) exactly."""
    if isinstance(ref, dict):
        assert isinstance(got, dict) and set(got) == set(ref), (where, got, ref)
        for k in ref:
            _assert_close(got[k], ref[k], f"{where}.{k}")
    elif isinstance(ref, list):
        assert isinstance(got, list) and len(got) == len(ref), (where, got, ref)
        for i, (g, r) in enumerate(zip(got, ref)):
            _assert_close(g, r, f"{where}[{i}]")
    elif isinstance(ref, float):
        assert got == pytest.approx(ref, **TOL), (where, got, ref)
    else:
        assert type(got) is type(ref) and got == ref, (where, got, ref)


@pytest.mark.slow
def test_training_reproduces_the_numbers_of_the_original_trainer(tmp_path: Path) -> None:
    _assert_close(measure(tmp_path), json.loads(REFERENCE.read_text()), "runs")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(Path(tmp)), indent=1))
