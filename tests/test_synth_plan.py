"""Planning invariants, for any image count and split fractions (property-based)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fungalzsl.errors import FungalError
from fungalzsl.synth import load_preset, plan_classes, with_overrides
from fungalzsl.synth.plan import parse_shard, split_counts

PAPER = load_preset("paper")


def test_paper_classes_are_the_paper_presets_in_label_order():
    from fungalzsl.synth.preset import PAPER_CLASSES
    from fungalzsl.text import PAPER_CLASSES as text_classes

    assert PAPER.class_names == list(PAPER_CLASSES) == ["spore", "hyphae", "mycelium"]
    assert text_classes is PAPER_CLASSES  # one definition, not a copy that could drift


@given(n=st.integers(0, 100_000), a=st.integers(0, 100), b=st.integers(0, 100), c=st.integers(1, 100))
def test_split_counts_sum_and_stay_close_to_the_fractions(n, a, b, c):
    total = a + b + c
    fr = {"train": a / total, "val": b / total, "test": c / total}
    counts = split_counts(n, fr)
    assert sum(counts.values()) == n
    assert all(abs(counts[k] - n * fr[k]) < 1 for k in fr)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3000))
def test_plan_is_balanced_stratified_and_indexed(n):
    jobs = plan_classes(PAPER, n)
    assert [j.index for j in jobs] == list(range(n))
    per_class = [sum(j.label_id == c for j in jobs) for c in range(3)]
    assert max(per_class) - min(per_class) <= 1
    for c in range(3):
        mine = [j for j in jobs if j.label_id == c]
        expected = split_counts(len(mine), PAPER.splits)
        assert {s: sum(j.split == s for j in mine) for s in expected} == expected
    assert len({j.file_name for j in jobs}) == n


def test_a_prefix_of_the_plan_is_the_smaller_plan():
    """Images keep their index, class and file when more images are asked for (splits may move)."""
    small, big = plan_classes(PAPER, 300), plan_classes(PAPER, 6000)
    assert [(j.index, j.label) for j in small] == [(j.index, j.label) for j in big[:300]]


@given(i=st.integers(-5, 20), n=st.integers(-2, 20))
def test_parse_shard(i, n):
    text = f"{i}/{n}"
    if n >= 1 and 0 <= i < n:
        assert parse_shard(text) == (i, n)
    else:
        with pytest.raises(FungalError):
            parse_shard(text)


def test_sequence_needs_one_whole_sequence():
    from fungalzsl.synth import plan_sequences

    seq = with_overrides(PAPER, num_images=19)
    with pytest.raises(FungalError, match="one sequence"):
        plan_sequences(seq, 19, seed=0)
    jobs = plan_sequences(seq, 45, seed=0)  # two whole sequences of 20; the rest is not made
    assert len(jobs) == 40 and {j.sequence_id for j in jobs} == {0, 1}
