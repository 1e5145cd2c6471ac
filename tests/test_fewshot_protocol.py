"""The few-shot protocol's pieces (draws, caps, intervals, scores) and the adapter files, without a model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fungalzsl.errors import FungalError
from fungalzsl.fewshot.adapt import EmbeddedShots
from fungalzsl.fewshot.adapter import fit_adapter, load_adapter, save_adapter
from fungalzsl.fewshot.protocol import draw, run_protocol, scores, shots_per_class, t_interval
from fungalzsl.labelled import LabelledImage


def test_draws_are_stratified_seeded_and_disjoint():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    d = draw(labels, [2, 1, 2], seed=3, k=2, r=0)
    assert np.bincount(labels[d.shots], minlength=3).tolist() == [2, 1, 2]
    assert sorted(np.concatenate([d.shots, d.query]).tolist()) == list(range(9))
    again = draw(labels, [2, 1, 2], seed=3, k=2, r=0)
    assert np.array_equal(d.shots, again.shots)
    others = {tuple(draw(labels, [2, 1, 2], seed=3, k=2, r=r).shots) for r in range(10)}
    assert len(others) > 1


def test_shots_are_capped_to_leave_one_image_and_single_images_refused():
    assert shots_per_class({"spore": 2, "hyphae": 21, "mycelium": 5}, 5) == {
        "spore": 1,
        "hyphae": 5,
        "mycelium": 4,
    }
    with pytest.raises(FungalError, match="spore have a single image"):
        shots_per_class({"spore": 1, "hyphae": 3}, 1)


def test_t_interval_and_scores():
    lo, hi = t_interval([0.5, 0.7])  # mean 0.6, sd 0.1414, t(0.975, 1) = 12.706
    assert (lo, hi) == pytest.approx((0.0, 1.0))
    lo, hi = t_interval([0.6, 0.7, 0.8])  # sd 0.1, t(0.975, 2) = 4.303: 0.7 ± 0.2484
    assert (lo, hi) == pytest.approx((0.7 - 0.24842, 0.7 + 0.24842), abs=1e-4)
    assert t_interval([0.4]) == [0.4, 0.4]
    s = scores(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 1]), np.array(["a", "a", "a", "b", "b"]))
    assert s["balanced_accuracy"] == pytest.approx(0.75) and s["accuracy"] == pytest.approx(0.8)
    assert s["per_source"]["a"] == {"balanced_accuracy": 0.75, "accuracy": pytest.approx(2 / 3), "n": 3}
    assert s["per_source"]["b"]["balanced_accuracy"] == 1.0


def _embedded(n_per_class=(3, 4, 2)) -> EmbeddedShots:
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(3, 8) * 3
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per_class)])
    emb = torch.nn.functional.normalize(
        centres[labels] + 0.3 * torch.randn(len(labels), 8, generator=g), dim=-1
    )
    items = [
        LabelledImage(path=f"x{i}.png", label=str(int(c)), source="s1" if i % 2 else "s2")
        for i, c in enumerate(labels)
    ]
    return EmbeddedShots(items, emb, labels, [it.source for it in items])


def test_protocol_rows_caps_and_separable_data():
    e = _embedded()
    zs = torch.zeros(len(e.labels), 3)  # a useless text classifier: everything from the shots
    out = run_protocol(
        e, zs, ["a", "b", "c"], 20.0, ks=[1, 3], repeats=3, methods=["tip", "probe", "prototype"]
    )
    assert out["images_per_class"] == {"a": 3, "b": 4, "c": 2}
    assert [(r["k"], r["method"]) for r in out["results"]] == [
        (k, m) for k in (1, 3) for m in ("tip", "probe", "prototype")
    ]
    k3 = out["results"][3]
    assert k3["shots_per_class"] == {"a": 2, "b": 3, "c": 1} and k3["capped"] is True
    assert out["results"][0]["capped"] is False
    for row in out["results"]:
        assert len(row["balanced_accuracy"]["values"]) == 3 and row["balanced_accuracy"][
            "mean"
        ] == pytest.approx(1.0)
        assert set(row["per_source"]) == {"s1", "s2"}


def test_the_zero_shot_arm_scores_the_text_classifier_on_the_same_queries():
    e = _embedded()
    right = 5.0 * torch.nn.functional.one_hot(e.labels, 3).float()  # a perfect text classifier
    wrong = right.roll(1, dims=1)  # always the next class
    for zs, expect in ((right, 1.0), (wrong, 0.0)):
        out = run_protocol(
            e, zs, ["a", "b", "c"], 20.0, ks=[1, 2], repeats=2, methods=["zeroshot", "prototype"]
        )
        rows = {(r["k"], r["method"]): r for r in out["results"]}
        assert rows[(1, "zeroshot")]["balanced_accuracy"]["values"] == [expect, expect]
        assert rows[(2, "zeroshot")]["params"] == [{}, {}]
        # the prototypes ignore the text: the same numbers under either classifier
        assert rows[(2, "prototype")]["balanced_accuracy"]["mean"] == pytest.approx(1.0)


def test_adapter_files_round_trip_and_score_the_same(tmp_path):
    e = _embedded((3, 3, 3))
    zs = torch.randn(9, 3, generator=torch.Generator().manual_seed(1))
    text = torch.randn(3, e.emb.shape[1], generator=torch.Generator().manual_seed(2))
    for method in ("tip", "probe", "prototype", "anchored"):
        a = fit_adapter(method, e.emb, e.labels, ["a", "b", "c"], zs, 20.0, text)
        a.info = {"adapted_from": "/runs/x"}
        save_adapter(tmp_path, a)
        b = load_adapter(tmp_path)
        assert b is not None and (b.method, b.classes, b.params, b.info) == (
            method,
            a.classes,
            a.params,
            a.info,
        )
        assert torch.equal(a.logits(e.emb, zs), b.logits(e.emb, zs))
    assert load_adapter(tmp_path / "none") is None
    (tmp_path / "adapter.json").write_text(json.dumps({"method": "magic", "classes": []}))
    with pytest.raises(FungalError, match="not a fungalzsl adapter"):
        load_adapter(tmp_path)
    with pytest.raises(ValueError, match="needs the class text embeddings"):
        fit_adapter("anchored", e.emb, e.labels, ["a", "b", "c"], zs, 20.0)
    with pytest.raises(FungalError, match="unknown adapter method"):
        fit_adapter("knn", e.emb, e.labels, ["a", "b", "c"], zs, 20.0)
