"""The sigmoid loss (SigLIP, multi-positive) and the CatLIP objective: hand-computed values, vocabulary
and targets, and tiny lite runs through train → evaluate → table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fungalzsl.errors import FungalError
from fungalzsl.eval import evaluate_run
from fungalzsl.eval.table import build_table, table_markdown
from fungalzsl.models import build_model
from fungalzsl.train.catlip import CatlipObjective, build_vocabulary, lemma, lemmas
from fungalzsl.train.inputs import read_inputs
from fungalzsl.train.loop import train_run
from fungalzsl.train.loss import (
    ClipContrastiveLoss,
    MultiPositiveContrastiveLoss,
    SigmoidContrastiveLoss,
    sigmoid_loss,
)
from fungalzsl.train.objectives import CatlipTraining, ContrastiveTraining, objective_for
from fungalzsl.train.settings import resolve_config
from tiny_data import make_dataset, make_descriptions

CFG = {"epochs": 2, "batch_size": 6, "unfreeze_every": 1, "unfreeze_max": {"image": 1, "text": 0},
       "image_size": 32, "embed_dim": 16, "progress": False, "lr": 5e-3, "warmup_steps": 0}  # fmt: skip


def test_sigmoid_loss_matches_a_hand_computed_batch() -> None:
    eye = torch.eye(2)
    scale, bias = torch.tensor(2.0), torch.tensor(-1.0)
    # logits = 2·I − 1 = [[1, −1], [−1, 1]]
    # different classes: z = [[1, −1], [−1, 1]], every z·logit = 1 → −4·log σ(1) / 2 images
    got = sigmoid_loss(eye, eye, torch.tensor([0, 1]), scale, bias)
    assert float(got) == pytest.approx(2 * math.log1p(math.exp(-1)))
    # same class: every pair positive, so the off-diagonal −1 logits are penalised too
    got = sigmoid_loss(eye, eye, torch.tensor([0, 0]), scale, bias)
    assert float(got) == pytest.approx(math.log1p(math.exp(-1)) + math.log1p(math.exp(1)))


def test_sigmoid_loss_module_learns_its_bias_from_minus_ten() -> None:
    fn = SigmoidContrastiveLoss()
    assert float(fn.logit_bias.detach()) == -10.0 and fn.logit_bias.requires_grad
    assert float(SigmoidContrastiveLoss(init_bias=-3.5).logit_bias.detach()) == -3.5
    feats = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    out = fn(feats, feats, torch.tensor([0, 0, 1, 1]), torch.tensor(10.0))
    out["loss"].backward()
    torch.testing.assert_close(out["loss"], out["loss_image"] + out["loss_text"])
    assert float(fn.logit_bias.grad) < 0  # with b = −10 the positives pull the bias up
    assert list(MultiPositiveContrastiveLoss().parameters()) == []  # contrastive losses: nothing new
    assert list(ClipContrastiveLoss().parameters()) == []
    assert list(dict(fn.named_parameters())) == ["logit_bias"]  # saved in last/ as extra.logit_bias


def test_lemmatiser_rules() -> None:
    cases = {"Hyphae": "hypha", "colonies": "colony", "branches": "branch", "threads": "thread",
             "branching": "branch", "spotted": "spot", "scattered": "scatter", "mass": "mass",
             "fungus": "fungus", "dense": "dense"}  # fmt: skip
    assert {w: lemma(w) for w in cases} == cases
    assert lemmas("The spores are small, round and yellow; spore") == {"spore", "small", "round", "yellow"}


TOY = {
    "spore": ["small round spores", "round yellow spore", "tiny round dots"],
    "hyphae": ["thin branching hyphae", "branched thin threads", "a hypha"],
}


def test_vocabulary_keeps_lemmas_in_k_descriptions_with_class_frequencies() -> None:
    v = build_vocabulary(TOY, ["spore", "hyphae"], min_count=2)
    # document frequencies: round 3, spore 2, thin 2, branch 2, hypha 2; small/yellow/tiny/dot/thread 1
    assert v["items"] == ["branch", "hypha", "round", "spore", "thin"]
    assert v["doc_freq"] == {"branch": 2, "hypha": 2, "round": 3, "spore": 2, "thin": 2}
    assert v["targets"]["spore"] == [0.0, 0.0, 1.0, pytest.approx(2 / 3), 0.0]
    assert v["targets"]["hyphae"] == [
        pytest.approx(2 / 3),
        pytest.approx(2 / 3),
        0.0,
        0.0,
        pytest.approx(2 / 3),
    ]
    with pytest.raises(FungalError, match="class 'hyphae' has no word"):
        build_vocabulary(TOY, ["spore", "hyphae"], min_count=3)
    with pytest.raises(FungalError, match="vocabulary is empty"):
        build_vocabulary(TOY, ["spore", "hyphae"], min_count=9)


def test_catlip_bce_targets_and_head_classifier() -> None:
    v = build_vocabulary(TOY, ["spore", "hyphae"], min_count=2)
    obj = CatlipObjective(v, ["spore", "hyphae"], dim=4)
    labels = torch.tensor([1, 0])
    torch.testing.assert_close(obj.targets[labels][0], torch.tensor([2 / 3, 2 / 3, 0, 0, 2 / 3]))
    img = torch.nn.functional.normalize(torch.randn(2, 4), dim=-1)
    logits = obj.head(img * 2.0)  # the head sees √D-scaled embeddings
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, obj.targets[labels])
    torch.testing.assert_close(obj.loss(img, labels)["loss"], expected)
    # class embedding = normalised frequency-weighted mean of the head rows of the class's items
    with torch.no_grad():
        obj.head.weight.copy_(torch.eye(5, 4))
    emb = obj.class_embeddings()
    torch.testing.assert_close(emb[0], torch.nn.functional.normalize(torch.tensor([0, 0, 1.0, 2 / 3]), dim=0))
    torch.testing.assert_close(emb[1], torch.nn.functional.normalize(torch.tensor([1.0, 1.0, 0, 0]), dim=0))


@pytest.mark.slow
def test_catlip_and_sigmoid_runs_classify_and_share_the_table(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 8, "val": 4, "test": 4})
    desc = make_descriptions(tmp_path / "d.jsonl")
    runs = {}
    for name, extra in {
        "contrastive": {},
        "sigmoid": {"loss": "sigmoid"},
        "catlip": {"objective": "catlip"},
    }.items():
        runs[name] = tmp_path / name
        res = train_run(data, desc, runs[name], "lite", {**CFG, **extra})
        assert res["status"] == "done"
        evaluate_run(
            runs[name], data, runs[name] / "eval", split="test", n_boot=10, figures=False, baseline=False
        )

    cat = runs["catlip"]
    vocab = json.loads((cat / "catlip_vocabulary.json").read_text())
    # make_descriptions: "{class} stage {i}: {words}" ×3 — every word of a class is in 3 descriptions
    assert {"spore", "hypha", "mycelium", "stage", "yellow", "network"} <= set(vocab["items"])
    emb = load_file(str(cat / "class_embeddings.safetensors"))["embeddings"]
    assert emb.shape == (3, 16) and torch.allclose(emb.norm(dim=-1), torch.ones(3))
    metrics = json.loads((cat / "eval" / "metrics.json").read_text())
    assert metrics["recall@1"] >= 2 / 3  # the head-derived classifier separates the toy classes
    assert json.loads((cat / "config.json").read_text())["catlip_vocabulary_size"] == len(vocab["items"])
    epochs = [json.loads(r) for r in (cat / "metrics.jsonl").read_text().splitlines()]
    assert all(r["unfrozen"]["text"] == 0 for r in epochs if r["type"] == "epoch")
    assert "logit_bias" in json.loads((runs["sigmoid"] / "config.json").read_text())

    rows = build_table([runs["contrastive"], runs["sigmoid"], runs["catlip"]])
    assert [r["objective"] for r in rows] == ["multi_positive", "sigmoid", "catlip"]
    lines = table_markdown(rows).splitlines()
    assert lines[0].endswith("| objective |")
    assert lines[2].endswith("| multi_positive |") and lines[4].endswith("| catlip |")


@pytest.mark.slow
def test_sigmoid_bias_survives_resume(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 4, "val": 2})
    desc = make_descriptions(tmp_path / "d.jsonl")
    cfg = {**CFG, "loss": "sigmoid"}
    straight = train_run(data, desc, tmp_path / "a", "lite", cfg)

    class Crash(Exception):
        pass

    def crash(rec: dict) -> None:
        if rec["epoch"] == 1:
            raise Crash

    with pytest.raises(Crash):
        train_run(data, desc, tmp_path / "b", "lite", cfg, on_epoch_end=crash)
    resumed = train_run(data, desc, tmp_path / "b", "lite", cfg, resume=True)
    assert resumed["logit_bias"] == pytest.approx(straight["logit_bias"], rel=1e-5)
    assert straight["logit_bias"] != -10.0


def test_catlip_bad_settings_fail_before_a_run_directory_exists(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 2})
    desc = make_descriptions(tmp_path / "d.jsonl")
    with pytest.raises(FungalError, match="vocabulary is empty"):
        train_run(
            data, desc, tmp_path / "run", "lite", {**CFG, "objective": "catlip", "catlip_min_count": 99}
        )
    with pytest.raises(FungalError, match="WiSE-FT is not defined"):
        train_run(data, desc, tmp_path / "run", "lite", {**CFG, "objective": "catlip", "wise_ft": [0.5]})
    assert not (tmp_path / "run").exists()


def test_objectives_answer_the_loops_questions(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"train": 2, "val": 1})
    inputs = read_inputs(data, make_descriptions(tmp_path / "d.jsonl"))
    torch.manual_seed(0)
    model = build_model("lite", image_size=32, embed_dim=16)
    image = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    labels, text_idx = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 3, 6, 1])
    limits = ({"image": 2, "text": 3}, {"text": 1})
    for loss, module, params in [("multi_positive", MultiPositiveContrastiveLoss, []),
                                 ("clip", ClipContrastiveLoss, []),
                                 ("sigmoid", SigmoidContrastiveLoss, ["logit_bias"])]:  # fmt: skip
        cfg = resolve_config({**CFG, "loss": loss}, None)
        obj = objective_for(cfg)(cfg, inputs)
        assert isinstance(obj, ContrastiveTraining)
        obj.bind(model, torch.device("cpu"))
        assert isinstance(obj.extra, module) and list(obj.state_dict()) == params
        assert obj.unfreeze_limits(*limits) == limits
        obj.start_stage(0)  # text tower from strings: the batch's paired descriptions
        text = model.encode_text([inputs.texts[i] for i in text_idx.tolist()])
        expected = obj.extra(image, text, labels, model.clamped_logit_scale())
        torch.testing.assert_close(obj.loss(model, image, text_idx, labels), expected)

    cfg = resolve_config({**CFG, "objective": "catlip"}, None)
    obj = objective_for(cfg)(cfg, inputs)
    assert isinstance(obj, CatlipTraining)
    obj.bind(model, torch.device("cpu"))
    assert set(obj.state_dict()) == {"head.weight", "head.bias"}  # RUN/last/: extra.head.*
    assert obj.parameters() == [obj.extra.head.weight, obj.extra.head.bias]
    assert obj.unfreeze_limits(*limits) == ({"image": 2, "text": 0}, {"text": 0})
    torch.testing.assert_close(obj.loss(model, image, text_idx, labels), obj.extra.loss(image, labels))
    with pytest.raises(FungalError, match="WiSE-FT is not defined"):
        objective_for(resolve_config({**CFG, "objective": "catlip", "wise_ft_alpha": 0.5}, None))
