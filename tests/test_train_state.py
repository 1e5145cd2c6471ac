"""TrainState (best score, patience) and the resume point: read once, refused for another run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from fungalzsl.errors import FungalError
from fungalzsl.train.inputs import draw_pairs, read_inputs
from fungalzsl.train.state import ResumePoint, TrainState, open_resume
from tiny_data import make_dataset, make_descriptions


def test_best_epoch_breaks_recall_ties_by_confidence_and_patience_stops() -> None:
    state = TrainState()
    assert state.best == [-math.inf, -math.inf] and state.epoch == -1
    assert state.end_epoch(0, [1.0, 0.6], patience=2)
    assert state.end_epoch(1, [1.0, 0.7], patience=2)  # same Recall@1, more confident: better
    assert not state.end_epoch(2, [1.0, 0.65], patience=2) and not state.stopped
    assert not state.end_epoch(3, [0.9, 0.99], patience=2)  # Recall@1 first
    assert (state.best, state.best_epoch, state.stale, state.epoch, state.stopped) == (
        [1.0, 0.7],
        1,
        2,
        3,
        True,
    )
    patient = TrainState()
    for e in range(5):
        patient.end_epoch(e, [0.0, 0.0], patience=None)
    assert patient.stale == 4 and not patient.stopped  # no patience: never stops
    saved = state.to_json({"model": "lite"})
    assert list(saved) == ["model", "epoch", "step", "best", "best_epoch", "stale", "unfrozen", "stopped"]


def test_resume_point_continues_after_the_saved_epoch_or_skips_a_stopped_run() -> None:
    saved = {"epoch": 2, "step": 30, "best": [1.0, 0.5], "best_epoch": 1, "stale": 1, "stopped": False}
    state = ResumePoint(Path("."), saved, {}).state(epochs=10)
    assert (state.epoch, state.step, state.best, state.best_epoch, state.stale) == (2, 30, [1.0, 0.5], 1, 1)
    assert ResumePoint(Path("."), {**saved, "stopped": True}, {}).state(epochs=10).epoch == 9


def test_open_resume_refuses_to_overwrite_and_fresh_starts_without_last(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(FungalError, match="has no resume state"):  # nothing to resume: no fresh start
        open_resume(run, resume=True, identity={"model": "lite"})
    with pytest.raises(FungalError, match="does not exist"):
        open_resume(tmp_path / "nope", resume=True, identity={"model": "lite"})
    assert open_resume(run, resume=False, identity={"model": "lite"}) is None
    (run / "model.safetensors").write_bytes(b"")
    with pytest.raises(FungalError, match="already holds a training run"):
        open_resume(run, resume=False, identity={"model": "lite"})


def test_pairs_match_each_image_with_a_description_of_its_class_and_split_over_ranks(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 5})
    inputs = read_inputs(data, make_descriptions(tmp_path / "d.jsonl", per_class=4))
    keep = torch.arange(len(inputs.train_set))
    one = draw_pairs(inputs, keep, batch_size=4, seed=3, epoch=1, rank=0, world=1)
    assert draw_pairs(inputs, keep, 4, 3, 1, 0, 1)[0][0].tolist() == one[0][0].tolist()  # seeded
    assert draw_pairs(inputs, keep, 4, 3, 2, 0, 1)[0][0].tolist() != one[0][0].tolist()  # per epoch
    images = torch.cat([i for i, _ in one])
    # 15 images in batches of 4: the last batch of 3 is kept; every image once
    assert sorted(images.tolist()) == list(range(15)) and [len(i) for i, _ in one] == [4, 4, 4, 3]
    for idx, tidx in one:
        for i, t in zip(idx.tolist(), tidx.tolist()):
            lo, hi = inputs.text_ranges[inputs.train_labels[i]]
            assert lo <= t < hi
    ranks = [draw_pairs(inputs, keep, 4, 3, 1, r, 2) for r in (0, 1)]
    for b, (idx, tidx) in enumerate(one):  # rank r holds every 2nd pair of the same global batch
        assert (
            ranks[0][b][0].tolist() == idx[0::2].tolist() and ranks[1][b][1].tolist() == tidx[1::2].tolist()
        )
    assert all(len(i) >= 2 for i, _ in draw_pairs(inputs, keep[:5], 4, 3, 1, 0, 1))  # no 1-pair batch


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names open files through /proc")
def test_last_checkpoint_fsyncs_every_file_then_its_directory_then_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from fungalzsl.train import checkpoint as ckpt
    from keyword_model import KeywordModel

    model = KeywordModel()
    model.spec = "keyword"
    opt = torch.optim.AdamW([model.logit_scale], lr=0.1)
    (model.logit_scale * 2).backward()
    opt.step()
    synced: list[Path] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    run = tmp_path / "run"
    run.mkdir()
    ckpt.save_last(run, model, opt, {"epoch": 0})
    new = run / ".last-new"
    for name in ("model.safetensors", "optimizer.safetensors", "state.json"):
        at = [i for i, p in enumerate(synced) if p.parent == new and p.name.startswith(f".{name}.")]
        assert at and synced[at[0] + 1] == new, (name, synced)  # the file, then the rename into place
    assert synced[-1] == run  # the swap of .last-new into last/ is durable too
    assert sorted(p.name for p in (run / "last").iterdir()) == ["model.safetensors", "optimizer.safetensors",
                                                                 "state.json"]  # fmt: skip
