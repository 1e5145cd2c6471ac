"""Progressive unfreezing: the schedule, which parameters get gradients, what AdamW holds, frozen BN."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fungalzsl.models import build_model
from fungalzsl.train.loop import train_run
from fungalzsl.train.loss import MultiPositiveContrastiveLoss
from fungalzsl.train.optim import add_unfrozen_groups, build_optimizer
from fungalzsl.train.unfreeze import UnfreezeSchedule, apply_unfreeze, trainable_groups
from tiny_data import make_dataset, make_descriptions


def test_schedule_unfreezes_one_group_per_tower_every_k_epochs_up_to_the_cap() -> None:
    s = UnfreezeSchedule({"image": 18, "text": 7}, every=5, max_unfrozen={"image": 3, "text": None})
    assert [s.unfrozen_at(e)["image"] for e in (0, 4, 5, 9, 10, 15, 99)] == [0, 0, 1, 1, 2, 3, 3]
    assert [s.unfrozen_at(e)["text"] for e in (0, 5, 30, 35, 99)] == [0, 1, 6, 7, 7]
    assert s.frozen_at(12) == {"image": 16, "text": 5}
    assert s.final_frozen(20) == {"image": 15, "text": 4}
    assert s.changes(12) == [5, 10]
    assert UnfreezeSchedule({"image": 4, "text": 4}, every=0).unfrozen_at(50) == {"image": 0, "text": 0}


@pytest.fixture(scope="module")
def lite():
    torch.manual_seed(0)
    return build_model("lite", image_size=32)


def test_gradients_reach_only_unfrozen_parameters(lite) -> None:
    model = lite
    apply_unfreeze(model, {"image": 2, "text": 0})
    x = torch.randn(4, 3, 32, 32)
    split = 16  # 18 image groups, top 2 trainable
    img = model.image_head(model.image_trunk(x, split), split)
    txt = model.encode_text(["spore a", "hyphae b", "spore c", "mycelium d"])
    model.zero_grad(set_to_none=True)
    MultiPositiveContrastiveLoss()(img, txt, torch.tensor([0, 1, 0, 2]), model.clamped_logit_scale())[
        "loss"
    ].backward()
    trainable = {id(p) for _, ps in trainable_groups(model, {"image": 2, "text": 0}) for p in ps}
    trainable |= {id(p) for p in model.head_parameters()} | {id(model.logit_scale)}
    for name, p in model.named_parameters():
        if id(p) in trainable:
            assert p.requires_grad and p.grad is not None, name
        else:
            assert not p.requires_grad and p.grad is None, name
    top_block = model.layer_groups()["image"][16]
    assert any(p.grad.abs().sum() > 0 for p in top_block.parameters())


def test_optimizer_groups_join_once_each_top_group_first_at_the_body_lr(lite) -> None:
    heads = [*lite.head_parameters(), lite.logit_scale]
    stepwise = build_optimizer(heads, 1e-3, 0.1)
    for stage in (
        {"image": 0, "text": 0},
        {"image": 1, "text": 0},
        {"image": 2, "text": 1},
        {"image": 2, "text": 1},
    ):
        add_unfrozen_groups(stepwise, lite, stage, 1e-4, 0.1)
    replayed = build_optimizer(heads, 1e-3, 0.1)  # a resume replays only the last stage's layout
    add_unfrozen_groups(replayed, lite, {"image": 2, "text": 1}, 1e-4, 0.1)

    def layout(opt: torch.optim.Optimizer) -> list[tuple[str, int, float, float]]:
        return [(g["name"], len(g["params"]), g["base_lr"], g["weight_decay"]) for g in opt.param_groups]

    assert layout(stepwise) == layout(replayed)
    names = list(dict.fromkeys(g["name"].split("/")[0] for g in stepwise.param_groups))
    assert names == ["head", "image.17", "image.16", "text.6"]
    held = [id(p) for g in stepwise.param_groups for p in g["params"]]
    expected = {id(p) for p in heads} | {
        id(p) for _, ps in trainable_groups(lite, {"image": 2, "text": 1}) for p in ps
    }
    assert len(held) == len(set(held)) and set(held) == expected  # each parameter once
    assert all((g["base_lr"] == 1e-3) == g["name"].startswith("head/") for g in stepwise.param_groups)
    assert all(
        (g["weight_decay"] == 0.0) == all(p.ndim < 2 for p in g["params"]) for g in stepwise.param_groups
    )


def test_frozen_batchnorm_in_eval_mode_unfrozen_in_train_mode(lite) -> None:
    apply_unfreeze(lite, {"image": 1, "text": 0})
    groups = lite.layer_groups()["image"]
    bns = lambda g: [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]  # noqa: E731
    assert all(not m.training for g in groups[:-1] for m in bns(g))
    assert all(m.training for m in bns(groups[-1]))


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_optimizer_holds_exactly_the_unfrozen_parameters_after_each_stage_and_frozen_bn_is_unchanged(
    tmp_path: Path,
) -> None:
    data = make_dataset(tmp_path / "data", {"train": 4, "val": 2})
    desc = make_descriptions(tmp_path / "d.jsonl")
    run = tmp_path / "run"
    seen: list[tuple[set[str], int, int]] = []
    model = build_model("lite", image_size=32)

    def check(rec: dict) -> None:
        state = json.loads((run / "last" / "state.json").read_text())
        names = {g["name"].split("/")[0] for g in state["param_groups"]}
        held = sum(g["n_params"] for g in state["param_groups"])
        apply_unfreeze(model, rec["unfrozen"])
        expected = sum(1 for p in model.parameters() if p.requires_grad)
        seen.append((names, held, expected))

    cfg = {"epochs": 3, "batch_size": 6, "unfreeze_every": 1, "unfreeze_max": {"image": 2, "text": 1},
           "image_size": 32, "progress": False}  # fmt: skip
    train_run(data, desc, run, "lite", cfg, on_epoch_end=check)
    assert [s[0] for s in seen] == [
        {"head"},
        {"head", "image.17", "text.6"},
        {"head", "image.17", "image.16", "text.6"},  # text capped at 1 group
    ]
    assert all(held == expected for _, held, expected in seen)

    # frozen BatchNorm statistics (stem, first blocks) equal the packaged weights; unfrozen ones moved
    trained = load_file(str(run / "last" / "model.safetensors"))
    start = build_model("lite", image_size=32).state_dict()
    for key in ("visual.bn1.running_mean", "visual.blocks.3.0.bn2.running_var"):
        torch.testing.assert_close(trained[key], start[key], rtol=0, atol=0)
    assert not torch.equal(trained["visual.bn2.running_mean"], start["visual.bn2.running_mean"])
    assert int(trained["visual.bn1.num_batches_tracked"]) == int(start["visual.bn1.num_batches_tracked"])
    epochs = [r for r in _records(run) if r["type"] == "epoch"]
    assert [r["cached_split"]["image"] for r in epochs] == [18, 17, 16]
    assert [r["cached_split"]["text"] for r in epochs] == [7, 0, 0]
