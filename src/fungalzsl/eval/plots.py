"""Figures of an evaluation: the paper's Figure 4 (probability distributions per description set) and
Figure 5 (example grid with green/red borders), the confusion matrix, the reliability diagram and the
training curves. Each function writes a PNG atomically and returns what it drew, so tests can check
panel counts and pixel sizes without parsing images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: evaluation runs on servers and in CI
import matplotlib.pyplot as plt
import numpy as np

from fungalzsl.io import atomic_path

DPI = 100
# The growth stages keep the colours the generator paints them with, so figures read at a glance;
# other classes (a lab's own label set) take matplotlib's qualitative palette in class order.
STAGE_COLOURS = {"spore": "#f2b705", "hyphae": "#f27405", "mycelium": "#b3001b"}


@dataclass
class Figure:
    path: Path
    panels: int
    size_px: tuple[int, int]


def class_colours(classes: Sequence[str]) -> dict[str, str]:
    cycle = plt.get_cmap("tab10").colors
    out, k = {}, 0
    for c in classes:
        if c in STAGE_COLOURS:
            out[c] = STAGE_COLOURS[c]
        else:
            out[c] = matplotlib.colors.to_hex(cycle[k % len(cycle)])
            k += 1
    return out


def _save(fig: Any, path: Path, panels: int) -> Figure:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    w, h = fig.get_size_inches()
    plt.close(fig)
    return Figure(path=path, panels=panels, size_px=(round(w * DPI), round(h * DPI)))


def plot_probability_distributions(
    sets: Sequence[tuple[str, np.ndarray, np.ndarray]], classes: Sequence[str], path: Path
) -> Figure:
    """Figure 4: one panel per description set; for each true class, box plots of the probability the
    model gives every class (same colour per class in every panel)."""
    colours = class_colours(classes)
    c = len(classes)
    fig, axes = plt.subplots(
        len(sets), 1, figsize=(max(6.0, 1.6 * c + 2), 2.6 * len(sets) + 0.45), squeeze=False
    )
    width = 0.8 / c
    for ax, (name, probs, labels) in zip(axes[:, 0], sets):
        for j, cls in enumerate(classes):
            data, pos = [], []
            for t in range(c):
                rows = probs[labels == t, j]
                data.append(rows if len(rows) else np.array([np.nan]))
                pos.append(t - 0.4 + width * (j + 0.5))
            bp = ax.boxplot(
                data,
                positions=pos,
                widths=width * 0.85,
                patch_artist=True,
                showfliers=True,
                flierprops={"markersize": 2, "alpha": 0.4},
            )
            for box in bp["boxes"]:
                box.set_facecolor(colours[cls])
                box.set_alpha(0.85)
            for med in bp["medians"]:
                med.set_color("black")
        ax.set_xticks(range(c), [f"true: {x}" for x in classes])
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("predicted probability")
        acc = float((probs.argmax(1) == labels).mean()) if len(labels) else float("nan")
        ax.set_title(f"{name}  (Recall@1 {acc:.3f}, n={len(labels)})", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles = [matplotlib.patches.Patch(color=colours[x], label=x) for x in classes]
    # The legend gets its own strip above the panels (a fixed 0.3 in, whatever the panel count).
    fig.legend(handles=handles, loc="upper center", ncol=c, fontsize=8, title="probability of",
               title_fontsize=8, frameon=False)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_size_inches()[1]))
    return _save(fig, path, len(sets))


def example_order(labels: np.ndarray, probs: np.ndarray, n: int) -> list[int]:
    """Errors first (most confident first: the worst mistakes), then correct images round-robin by class."""
    pred = probs.argmax(1)
    conf = probs.max(1)
    wrong = [int(i) for i in np.flatnonzero(pred != labels)[np.argsort(-conf[pred != labels], kind="stable")]]
    right_by_class = [list(np.flatnonzero((pred == labels) & (labels == k))) for k in range(probs.shape[1])]
    right: list[int] = []
    while any(right_by_class) and len(right) < n:
        for lst in right_by_class:
            if lst:
                right.append(int(lst.pop(0)))
    return (wrong + right)[:n]


def plot_examples(
    paths: Sequence[Path],
    labels: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    path: Path,
    n: int = 16,
    cols: int = 4,
) -> Figure:
    """Figure 5: a grid of images titled 'pred (confidence) / true', green border if right, red if wrong."""
    from fungalzsl.images import ImageReadError, load_image

    order = example_order(labels, probs, n)
    rows = max(1, -(-len(order) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.7 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), order):
        k = int(probs[i].argmax())
        ok = k == int(labels[i])
        try:
            im = load_image(paths[i])
            im.thumbnail((256, 256))
            ax.imshow(np.asarray(im))
        except ImageReadError:
            ax.text(0.5, 0.5, "unreadable", ha="center", va="center")
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_edgecolor("#1a9641" if ok else "#d7191c")
            side.set_linewidth(5)
        ax.set_title(
            f"pred: {classes[k]} ({probs[i, k]:.2f})\ntrue: {classes[int(labels[i])]}",
            fontsize=9,
            color="#1a9641" if ok else "#d7191c",
        )
    fig.tight_layout()
    return _save(fig, path, len(order))


def plot_confusion(cm: Sequence[Sequence[int]], classes: Sequence[str], path: Path) -> Figure:
    m = np.asarray(cm, dtype=float)
    c = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 * c + 2.5, 1.1 * c + 2))
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for r in range(c):
        for k in range(c):
            ax.text(
                k,
                r,
                f"{int(m[r, k])}\n{norm[r, k]:.0%}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if norm[r, k] > 0.6 else "black",
            )
    ax.set_xticks(range(c), classes, rotation=30, ha="right")
    ax.set_yticks(range(c), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (count, row %)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, 1)


def plot_reliability(bins: Sequence[dict[str, float]], ece: float, path: Path) -> Figure:
    """Accuracy against confidence per bin (bars) with the diagonal of perfect calibration."""
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(4.5, 5.2), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    lo = np.array([b["lo"] for b in bins])
    w = np.array([b["hi"] - b["lo"] for b in bins])
    acc = np.array([b["accuracy"] for b in bins])
    conf = np.array([b["confidence"] for b in bins])
    cnt = np.array([b["count"] for b in bins])
    has = cnt > 0
    ax.bar(
        lo[has], acc[has], width=w[has], align="edge", color="#2b83ba", edgecolor="black", label="accuracy"
    )
    ax.bar(
        lo[has],
        conf[has] - acc[has],
        bottom=acc[has],
        width=w[has],
        align="edge",
        color="#d7191c",
        alpha=0.35,
        label="gap",
    )
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {ece:.3f}, {len(bins)} bins)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    hist.bar(lo, cnt, width=w, align="edge", color="grey")
    hist.set_xlabel("confidence")
    hist.set_ylabel("images")
    hist.set_xlim(0, 1)
    fig.tight_layout()
    return _save(fig, path, 2)


def plot_training_curves(records: Sequence[dict[str, Any]], path: Path) -> Figure | None:
    """Every numeric series of RUN/metrics.jsonl against the optimiser step (or epoch when records have
    no step), one panel per metric family. Timings are left out: they measure the machine, not training."""
    keys: dict[str, list[tuple[float, float]]] = {}
    for i, r in enumerate(records):
        # Step, not epoch: per-step and per-epoch records then share one axis without vertical jumps.
        x = r.get("step", r.get("epoch", i))
        if not isinstance(x, (int, float)):
            continue
        for k, v in r.items():
            if (
                k in ("epoch", "step", "time", "timestamp")
                or k.endswith("_s")
                or k in ("s_per_it", "sec_per_it")
                or not isinstance(v, (int, float))
                or isinstance(v, bool)
            ):
                continue
            keys.setdefault(k, []).append((float(x), float(v)))
    series = {k: v for k, v in keys.items() if len(v) >= 2}
    if not series:
        return None
    groups: dict[str, list[str]] = {}
    for k in series:
        fam = "loss" if "loss" in k else "recall / accuracy" if ("recall" in k or "acc" in k) else k
        groups.setdefault(fam, []).append(k)
    fams = list(groups)[:6]
    fig, axes = plt.subplots(len(fams), 1, figsize=(6, 2.2 * len(fams)), squeeze=False, sharex=True)
    for ax, fam in zip(axes[:, 0], fams):
        for k in groups[fam]:
            xs, ys = zip(*series[k])
            ax.plot(xs, ys, label=k, lw=1.2)
        ax.set_ylabel(fam, fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step" if any("step" in r for r in records) else "epoch")
    fig.tight_layout()
    return _save(fig, path, len(fams))
