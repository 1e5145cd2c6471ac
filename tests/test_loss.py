"""MultiPositiveContrastiveLoss (paper Eq. 7–9) against hand-computed numbers and ClipContrastiveLoss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from fungalzsl.train.loss import (
    ClipContrastiveLoss,
    MultiPositiveContrastiveLoss,
    clip_loss,
    multi_positive_loss,
)


def test_hand_computed_batch() -> None:
    # images q1=(1,0) q2=(0,1) q3=(.6,.8); texts r1=(.8,.6) r2=(1,0) r3=(.28,.96); classes [a, a, b]; 1/τ = 2
    # S = [[.8, 1, .28], [.6, 0, .96], [.96, .6, .936]]
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)
    text = torch.tensor([[0.8, 0.6], [1.0, 0.0], [0.28, 0.96]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])

    def lse(*xs: float) -> float:
        return math.log(sum(math.exp(2 * x) for x in xs))

    # Eq. 7: rows; q1, q2 have P = {r1, r2}, q3 has P = {r3}
    l_image = (
        -(
            ((2 * 0.8 - lse(0.8, 1, 0.28)) + (2 * 1 - lse(0.8, 1, 0.28))) / 2
            + ((2 * 0.6 - lse(0.6, 0, 0.96)) + (2 * 0 - lse(0.6, 0, 0.96))) / 2
            + (2 * 0.936 - lse(0.96, 0.6, 0.936))
        )
        / 3
    )
    # Eq. 8: columns; r1, r2 have P = {q1, q2}, r3 has P = {q3}
    l_text = (
        -(
            ((2 * 0.8 - lse(0.8, 0.6, 0.96)) + (2 * 0.6 - lse(0.8, 0.6, 0.96))) / 2
            + ((2 * 1 - lse(1, 0, 0.6)) + (2 * 0 - lse(1, 0, 0.6))) / 2
            + (2 * 0.936 - lse(0.28, 0.96, 0.936))
        )
        / 3
    )
    assert abs(l_image - 1.198750453880825) < 1e-12 and abs(l_text - 1.2051921880533423) < 1e-12
    out = MultiPositiveContrastiveLoss()(image, text, labels, torch.tensor(2.0, dtype=torch.float64))
    assert abs(float(out["loss_image"]) - l_image) < 1e-6
    assert abs(float(out["loss_text"]) - l_text) < 1e-6
    assert abs(float(out["loss"]) - 2.403942641934167) < 1e-6  # Eq. 9: the sum


def _features(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=-1), F.normalize(
        torch.randn(n, d, generator=g), dim=-1
    )


def test_equals_clip_loss_when_every_class_appears_once() -> None:
    image, text = _features(7, 5, 0)
    scale = torch.tensor(14.3)
    mp = multi_positive_loss(image, text, torch.arange(7), scale)
    cl = clip_loss(image, text, scale)
    torch.testing.assert_close(torch.stack(mp), torch.stack(cl))


def test_loss_modules_report_their_two_halves_and_their_sum() -> None:
    image, text = _features(6, 5, 4)
    labels, scale = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor(10.0)
    for module, halves in (
        (MultiPositiveContrastiveLoss(), multi_positive_loss(image, text, labels, scale)),
        (ClipContrastiveLoss(), clip_loss(image, text, scale)),
    ):
        out = module(image, text, labels, scale)
        torch.testing.assert_close(out["loss_image"], halves[0], rtol=0, atol=0)
        torch.testing.assert_close(out["loss_text"], halves[1], rtol=0, atol=0)
        torch.testing.assert_close(out["loss"], halves[0] + halves[1], rtol=0, atol=0)


def test_differs_from_clip_loss_with_repeated_classes() -> None:
    image, text = _features(6, 5, 1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    mp = sum(multi_positive_loss(image, text, labels, torch.tensor(10.0)))
    cl = sum(clip_loss(image, text, torch.tensor(10.0)))
    assert abs(float(mp) - float(cl)) > 1e-3


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 12), n_classes=st.integers(1, 4))
def test_invariant_to_batch_permutation(seed: int, n: int, n_classes: int) -> None:
    image, text = _features(n, 4, seed)
    labels = torch.randint(0, n_classes, (n,), generator=torch.Generator().manual_seed(seed))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    loss = MultiPositiveContrastiveLoss()
    a = loss(image, text, labels, torch.tensor(7.0))["loss"]
    b = loss(image[perm], text[perm], labels[perm], torch.tensor(7.0))["loss"]
    torch.testing.assert_close(a, b)


def test_gradient_reaches_features_and_temperature() -> None:
    image, text = _features(6, 4, 2)
    image.requires_grad_(True)
    log_scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    MultiPositiveContrastiveLoss()(image, text, torch.tensor([0, 1, 2, 0, 1, 2]), log_scale.exp())[
        "loss"
    ].backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert log_scale.grad is not None and log_scale.grad != 0


def test_perfect_alignment_has_lower_loss_than_random() -> None:
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    centres = torch.eye(3, 4)
    aligned = centres[labels]
    image, text = _features(6, 4, 3)
    scale = torch.tensor(20.0)
    assert sum(multi_positive_loss(aligned, aligned, labels, scale)) < sum(
        multi_positive_loss(image, text, labels, scale)
    )
