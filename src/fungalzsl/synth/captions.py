"""Grounded captions: short texts stating what an image shows, read off the scene the generator drew.

The generator knows every structure it placed, so each image gets facts (counts, sizes, lengths,
branching depth, density, field coverage, germ tubes, buds, spore heads, colours) and 4 captions that
state them in different phrasings, without naming the class. They are derived from the scene alone:
no random numbers, no pixels, so the images (and the golden test) are exactly as without captions,
and the same seed and preset give the same captions. ``fungalzsl generate --captions`` (or ``fungalzsl
generate captions DIR`` for an existing dataset) writes them to ``DIR/captions.jsonl``, one row per
image: ``file_name``, ``index``, ``label``, ``captions`` (list of strings) and ``facts`` (object); see
docs/dataset.md. ``train.captions: grounded`` trains on them beside the class descriptions."""

from __future__ import annotations

import colorsys
import json
from pathlib import Path
from typing import Any

import numpy as np

from fungalzsl.captionsfile import CAPTIONS_FILE
from fungalzsl.synth.geometry import Scene

_GRID = 64  # field coverage is measured on a 64 x 64 grid of the unit square
_WORDS = [
    "no",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
]


def number(n: int) -> str:
    return _WORDS[n] if 0 <= n < len(_WORDS) else str(n)


def colour_name(rgb: np.ndarray) -> str:
    """A plain colour word for an RGB colour in [0, 1] (hue bands; pale and dark tones named)."""
    h, s, v = colorsys.rgb_to_hsv(*(float(c) for c in np.clip(rgb, 0, 1)))
    deg = h * 360
    if s < 0.12:
        return "grey" if v < 0.85 else "white"
    if s < 0.35 and v > 0.7:
        return "pale beige" if deg < 60 else "pale"
    if deg < 12 or deg >= 345:
        hue = "red"
    elif deg < 24:
        hue = "red-orange"
    elif deg < 42:
        hue = "orange"
    elif deg < 70:
        hue = "yellow"
    elif deg < 170:
        hue = "green"
    elif deg < 260:
        hue = "blue"
    else:
        hue = "purple"
    if v < 0.7 and hue in ("red-orange", "orange", "yellow-orange"):
        return "brown"
    return f"dark {hue}" if v < 0.45 else hue


def coverage(scene: Scene, mask: np.ndarray | None = None) -> float:
    """Fraction of a 64 x 64 grid over the field touched by the (selected) structures' discs and strokes."""
    grid = np.zeros((_GRID, _GRID), dtype=bool)
    keep = np.ones(len(scene.struct_kind), dtype=bool) if mask is None else mask
    centres = np.arange(_GRID) / _GRID + 0.5 / _GRID
    for (x, y), r in zip(scene.circle_xy[keep].tolist(), np.asarray(scene.circle_r)[keep].tolist()):
        if r > 0:
            rr = max(r, 0.5 / _GRID)
            grid |= (centres[None, :] - x) ** 2 + (centres[:, None] - y) ** 2 <= rr * rr
    seg = scene.seg_xy[keep[scene.seg_struct]].astype(np.float64) if scene.n_segments else np.zeros((0, 4))
    if seg.size:
        n = np.ceil(np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]) * _GRID * 2).astype(int) + 1
        row = np.repeat(np.arange(len(seg)), n)
        first = np.repeat(np.cumsum(n) - n, n)
        t = (np.arange(row.size) - first) / np.maximum(n[row] - 1, 1)  # 0 → 1 along each segment
        px = seg[row, 0] + t * (seg[row, 2] - seg[row, 0])
        py = seg[row, 1] + t * (seg[row, 3] - seg[row, 1])
        ix = np.clip((px * _GRID).astype(int), 0, _GRID - 1)
        iy = np.clip((py * _GRID).astype(int), 0, _GRID - 1)
        inside = (px >= 0) & (px < 1) & (py >= 0) & (py < 1)
        grid[iy[inside], ix[inside]] = True
    return float(grid.mean())


def scene_facts(scene: Scene, label: str) -> dict[str, Any]:
    """What the image shows, from its scene: the numbers every caption is written from."""
    host = np.asarray(scene.struct_host, dtype=bool)
    seg_host = host[scene.seg_struct] if scene.n_segments else np.zeros(0, dtype=bool)
    seg = scene.seg_xy[seg_host].astype(np.float64)
    lengths = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])
    radius = np.asarray(scene.circle_r)[host]
    discs = radius[radius > 0]
    facts: dict[str, Any] = {
        "structures": int(host.sum()),
        "discs": int(discs.size),
        "disc_diameter": round(float(2 * discs.mean()), 4) if discs.size else 0.0,
        "segments": int(seg_host.sum()),
        "depth": int(scene.seg_level[seg_host].max()) + 1 if seg_host.any() else 0,
        "total_length": round(float(lengths.sum()), 3),
        "coverage": round(coverage(scene, host), 3),
        "colour": colour_name(np.asarray(scene.struct_rgb)[host].mean(axis=0)) if host.any() else "none",
        "overlap": {},
    }
    for k in sorted(set(np.asarray(scene.struct_kind)[~host].tolist())):
        pick = (np.asarray(scene.struct_kind) == k) & ~host
        facts["overlap"][k] = {
            "count": int(pick.sum()),
            "colour": colour_name(np.asarray(scene.struct_rgb)[pick].mean(axis=0)),
            "branched": bool(scene.n_segments and np.isin(scene.seg_struct, np.flatnonzero(pick)).any()),
        }
    facts.update(scene.notes)
    return facts


def _density(cov: float) -> str:
    return "sparse" if cov < 0.08 else "moderately dense" if cov < 0.25 else "dense"


def _size(diameter: float) -> str:
    return "tiny" if diameter < 0.02 else "small" if diameter < 0.045 else "large"


def _extras(f: dict[str, Any]) -> str:
    parts = []
    for o in f["overlap"].values():
        what = "branched colony" if o["branched"] else "round dot"
        parts.append(f"{number(o['count'])} {o['colour']} {what}{'s' if o['count'] != 1 else ''}")
    return ", plus " + " and ".join(parts) if parts else ""


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def captions_from_facts(f: dict[str, Any]) -> list[str]:
    """Four captions of one image, each stating its facts in another phrasing (no class names)."""
    col, cov, extra = f["colour"], f["coverage"], _extras(f)
    if "germ_tubes" in f:
        tubes = f["germ_tubes"]
        one, two = tubes.count(1), tubes.count(2)
        ln = float(np.mean(f["tube_length_diameters"]))
        return [
            f"{number(len(tubes))} round {col} cells, {number(one)} with one short tube and {number(two)} with two",
            f"{col} discs each sprouting short thin tubes about {ln:.1f} disc diameters long{extra}",
            f"count {len(tubes)} cells, {sum(tubes)} tubes, branching depth 1, coverage {_pct(cov)}",
            f"a {_density(cov)} field of {_size(f['disc_diameter'])} {col} dots with short tails",
        ]
    if "spore_heads" in f:
        n = f["network_spores"]
        return [
            f"{number(f['networks'])} branching networks bearing {f['spore_heads']} heads and "
            f"{f['spore_chains']} chains of tiny round spores",
            f"a {_density(cov)} web of branches {f['depth']} levels deep with {n} small dots at its tips",
            f"count {f['networks']} networks, {n} spores, branching depth {f['depth']}, coverage {_pct(cov)}",
            f"branch tips capped with rows and clusters of tiny dots, {f['segments']} segments",
        ]
    if "buds" in f:
        buds = f["buds"]
        with_buds = sum(1 for b in buds if b)
        return [
            f"{number(f['cells'])} oval {col} cells, {number(with_buds)} of them with small buds",
            f"{col} ovals with {sum(buds)} round knobs at their ends, no branches",
            f"count {f['cells']} cells, {sum(buds)} buds, branching depth 0, coverage {_pct(cov)}",
            f"a {_density(cov)} field of separate {_size(f['disc_diameter'])} ovals and their buds",
        ]
    n, depth = f["structures"], f["depth"]
    if depth == 0:
        return [
            f"{number(n)} {_size(f['disc_diameter'])} round {col} discs with no branches{extra}",
            f"a white field with {n} separate {col} spots covering {_pct(cov)} of the image",
            f"count {n} discs, branching depth 0, colour {col}, coverage {_pct(cov)}",
            f"{number(n)} isolated {col} dots, each about {_pct(f['disc_diameter'])} of the image wide",
        ]
    per = f["total_length"] / max(n, 1)
    if f["disc_diameter"] and per < 3 * f["disc_diameter"]:  # discs with short tubes (--mode continuum)
        ln = per / f["disc_diameter"]
        return [
            f"{number(n)} round {col} cells, each sprouting short thin tubes about {ln:.1f} disc diameters long{extra}",
            f"{col} discs with short tails, branching depth {depth}, coverage {_pct(cov)}",
            f"count {n} cells, {f['segments']} tube segments, branching depth {depth}, coverage {_pct(cov)}",
            f"a {_density(cov)} field of {_size(f['disc_diameter'])} {col} dots with short tails",
        ]
    reach = "short" if per < 0.5 else "long"
    return [
        f"{number(n)} {col} colonies, each a small disc with branches {depth} levels deep{extra}",
        f"{_density(cov)} {col} branching filaments from {n} centres covering {_pct(cov)} of the field",
        f"count {n} centres, branching depth {depth}, {f['segments']} segments, "
        f"total length {f['total_length']:.1f} image widths, colour {col}",
        f"{reach} {col} branches, {_density(cov)}, reaching {depth} levels of branching",
    ]


def image_captions(preset: Any, seed: int, job: Any, mode: str = "classes") -> dict[str, Any]:
    """The captions row of one planned image (file_name is the ImageFolder path)."""
    from fungalzsl.synth.sample import make_scene

    scene, _, _ = make_scene(preset, seed, job, mode)
    facts = scene_facts(scene, job.label)
    return {"file_name": job.file_name, "index": job.index, "label": job.label,
            "captions": captions_from_facts(facts), "facts": facts}  # fmt: skip


def write_captions(data: str | Path, progress: bool = True) -> Path:
    """Write ``DATA/captions.jsonl`` for a finished dataset, from its manifest's preset, seed and mode."""
    from fungalzsl.errors import fail
    from fungalzsl.io import write_jsonl
    from fungalzsl.progress import step
    from fungalzsl.synth.plan import plan_classes, plan_sequences
    from fungalzsl.synth.preset import GeneratorPreset

    data = Path(data)
    try:
        manifest = json.loads((data / "dataset.json").read_text())
        preset = GeneratorPreset.model_validate(manifest["preset"]["settings"])
        seed, mode = int(manifest["seed"]), str(manifest.get("mode", "classes"))
    except (OSError, ValueError, KeyError, TypeError):
        raise fail(
            f"{data} is not a finished dataset written by fungalzsl generate (no usable dataset.json)",
            "captions are read off the generator's scenes: generate the data with fungalzsl generate",
        ) from None
    n = preset.num_images
    jobs = plan_sequences(preset, n, seed) if mode == "sequence" else plan_classes(preset, n)
    rows = []
    with step(f"writing grounded captions of {len(jobs)} images", len(jobs), enabled=progress) as bar:
        for job in jobs:
            rows.append(image_captions(preset, seed, job, mode))
            bar.advance(1)
    out = data / CAPTIONS_FILE
    write_jsonl(out, rows)
    return out
