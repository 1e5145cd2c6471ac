"""The fast geometry sampler and rasteriser are the paper's recursion and colours, only faster."""

from __future__ import annotations

import io
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy import stats

from fungalzsl.synth import load_preset
from fungalzsl.synth.geometry import Scene, grow_branches, normal_pair
from fungalzsl.synth.render import quantize_width, render_skia, render_skia_png, width_code


def test_normal_pair_is_two_independent_standard_normals():
    rng = np.random.default_rng(0)
    u = rng.random((2, 200_000), dtype=np.float32)
    a, b = normal_pair(u[0], u[1])
    for z in (a, b):
        assert stats.kstest(z, "norm").pvalue > 1e-3
        assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.01


@pytest.mark.parametrize("m", range(1, 14))
def test_sub_branch_count_floor_stays_below_the_range(m):
    """grow_branches draws k = low + floor(m·u) in float32 with no clamp: the largest u below 1 must
    still floor to m - 1 (the preset allows up to 13 values, 0..12)."""
    u_max = np.nextafter(np.float32(1), np.float32(0))
    assert int((np.float32(m) * np.array([u_max], dtype=np.float32)).astype(np.intp)[0]) == m - 1


def _recursive_tree(rng, b, x, y, L, W, d, roots, level, out, tree):
    """The authors' generate_randomized_branch, one Python call per branch (the reference)."""
    if d == 0 or b.min_length > L:
        return
    drawn = L * b.length_decay * max(1.0 + b.length_jitter * rng.standard_normal(), 0.0)
    ang = rng.uniform(0, 2 * np.pi)
    ex, ey = x + drawn * np.cos(ang), y + drawn * np.sin(ang)
    out.append((tree, level, drawn, W))
    if b.sub_branches == "poisson":
        k = rng.poisson(b.sub_branches_lambda)
    else:
        k = rng.integers(b.sub_branches_range[0], b.sub_branches_range[1] + 1)
    temp = max(1.0 + b.temperature_factor_sd * rng.standard_normal(), 0.0)
    sub_len = drawn * rng.uniform(*b.sub_length) * temp
    sub_w = W * rng.uniform(*b.width_factor)
    for _ in range(k):
        _recursive_tree(rng, b, ex, ey, sub_len, sub_w, d - 1, 0, level + 1, out, tree)
    for _ in range(roots):  # the first branch's extra branches from the centre
        _recursive_tree(rng, b, x, y, drawn, W, d - 1, 0, level + 1, out, tree)


def _level_stats(tree, level, length, width, n_trees):
    """Per level: (mean, standard error) over trees of the branch count, and of each tree's mean drawn
    length and width. Per tree, because the branches of one tree share their ancestors' draws."""
    out = {}
    for lev in np.unique(level):
        m = level == lev
        count = np.bincount(tree[m], minlength=n_trees)
        has = count > 0
        per_tree = [count] + [np.bincount(tree[m], weights=v[m], minlength=n_trees)[has] / count[has]
                              for v in (length, width)]  # fmt: skip
        out[int(lev)] = [(x.mean(), x.std() / np.sqrt(x.size)) for x in per_tree]
    return out


@pytest.mark.parametrize(
    "update, depth, roots",
    [
        ({}, 4, 4),  # hyphae-like, uniform 3..5 sub-branches
        ({"sub_branches": "poisson", "sub_branches_lambda": 2.5, "min_length": 0.02}, 6, 3),  # cut-off binds
    ],
)
def test_vectorised_branches_match_the_recursion(update, depth, roots):
    """Per level: branches per tree, drawn length and width — the level-by-level float32 sampler and
    the one-call-per-branch recursion agree within 4 standard errors (a 10% bias in any of them
    fails, see the check on the tolerance)."""
    b = load_preset("paper").branching.model_copy(update=update)
    n, L0, W0 = 2000, 0.2, 2.0
    seg, width, owner, level = grow_branches(
        np.random.default_rng(1), b, np.full((n, 2), 0.5), np.full(n, L0), np.full(n, W0),
        np.full(n, depth), np.full(n, roots), np.arange(n),
    )  # fmt: skip
    length = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])
    fast = _level_stats(owner, level, length, width, n)
    rows: list[tuple[int, int, float, float]] = []
    ref_rng = np.random.default_rng(2)
    for t in range(n):
        _recursive_tree(ref_rng, b, 0.5, 0.5, L0, W0, depth, roots, 0, rows, t)
    r = np.array(rows)
    ref = _level_stats(r[:, 0].astype(int), r[:, 1].astype(int), r[:, 2], r[:, 3], n)
    compared = 0
    for lev in sorted(set(fast) | set(ref)):
        if lev not in ref or ref[lev][0][0] < 0.5:  # a rare deepest level: too few to compare
            continue
        for stat, (got, se_got), (want, se_want) in zip(("count", "length", "width"), fast[lev], ref[lev]):
            tol = 4 * np.hypot(se_got, se_want) + 1e-9
            assert abs(got - want) <= tol, (lev, stat, got, want, tol)
            compared += 1
            # The test can see a 10% bias in every length and width, and in the counts of the first
            # levels (deeper Poisson counts vary too much from tree to tree).
            assert tol < 0.1 * want or (stat == "count" and lev >= 3), (lev, stat, tol, want)
    assert compared >= 9


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-4, 60.0), st.floats(1e-4, 60.0))
def test_width_quantisation_is_close_and_monotone(w1, w2):
    drawn = float(quantize_width(np.array([w1]))[0])
    if w1 >= 1.0:
        assert abs(drawn / w1 - 1) <= 0.021
    elif w1 >= 1 / 16:
        assert abs(drawn - w1) <= 1 / 16 + 1e-6
    else:
        assert drawn == 1 / 8
    lo, hi = sorted((w1, w2))
    assert width_code(np.array([lo]))[0] <= width_code(np.array([hi]))[0]


def test_canvas_channel_order_gives_true_rgb():
    """skia draws on a BGRA canvas; the pixels and the PNG must come out RGB."""
    colour = np.array([[1.0, 0.5, 0.0]])
    scene = Scene(
        background=np.array([0.0, 0.0, 1.0]),
        struct_kind=["spore"],
        struct_host=np.array([True]),
        circle_xy=np.array([[0.5, 0.5]]),
        circle_r=np.array([0.2]),
        struct_rgb=colour,
        seg_xy=np.zeros((0, 4), np.float32),
        seg_width=np.zeros(0),
        seg_struct=np.zeros(0, np.int64),
        seg_level=np.zeros(0, np.int16),
    )
    rgb = render_skia(scene, 40)
    png = np.asarray(Image.open(io.BytesIO(render_skia_png(scene, 40))))
    for img in (rgb, png):
        assert tuple(img[20, 20]) == (255, 128, 0)
        assert tuple(img[0, 0]) == (0, 0, 255)


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc tunables"
)
def test_worker_processes_get_the_tuned_allocator(monkeypatch):
    from fungalzsl.runtime import GLIBC_TUNABLES, tuned_allocator_for_children

    for var in ("GLIBC_TUNABLES", "FUNGALZSL_REEXECED", "FUNGALZSL_NO_REEXEC"):
        monkeypatch.delenv(var, raising=False)
    probe = [sys.executable, "-c", "import os; print(os.environ.get('GLIBC_TUNABLES', ''))"]
    with tuned_allocator_for_children():
        seen = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()
    assert seen == GLIBC_TUNABLES
    assert "GLIBC_TUNABLES" not in os.environ  # this process's environment is restored
    monkeypatch.setenv("FUNGALZSL_NO_REEXEC", "1")  # the opt-out holds for workers too
    with tuned_allocator_for_children():
        assert "GLIBC_TUNABLES" not in os.environ
