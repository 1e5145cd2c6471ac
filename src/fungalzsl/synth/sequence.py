"""Time-aligned growth sequences (Rani et al., 2025b, "Synthetic fungi datasets: a time-aligned approach").

A sequence follows one population of cells over ``frames`` time steps of the timeline. Each cell
switches from stage k-1 to stage k at the start of class k's time slot plus N(0, transition_sd_s),
so early frames are all spores, middle frames mix spores and hyphae, late frames are mostly mycelium.
A cell keeps its position and its own branch tree across frames, and a tree grows level by level
during its stage, so consecutive frames show the same organism growing. A frame is labelled by the
stage most of its cells are in, and records the fraction of cells in every stage (the transition
ratio)."""

from __future__ import annotations

import numpy as np

from fungalzsl.synth.colour import hex_to_rgb, ramp_colours, random_ramp
from fungalzsl.synth.geometry import Scene, grow_branches
from fungalzsl.synth.preset import GeneratorPreset
from fungalzsl.synth.rng import SEQUENCE_STREAM, image_rng


def frame_time(preset: GeneratorPreset, frame: int) -> float:
    """Frames sample the middle of equal steps of the timeline."""
    F = preset.sequence.frames
    return (frame + 0.5) * preset.timeline_s / F


def temperature_at(preset: GeneratorPreset, t: float) -> float:
    """Piecewise-linear map of the timeline onto each class's temperature range."""
    for c in preset.classes:
        t0, t1 = c.time_s
        if t0 <= t < t1 or (c is preset.classes[-1] and t >= t0):
            frac = 0.0 if t1 == t0 else min(max((t - t0) / (t1 - t0), 0.0), 1.0)
            return c.temperature_K[0] + frac * (c.temperature_K[1] - c.temperature_K[0])
    return preset.classes[0].temperature_K[0]


def _cells(preset: GeneratorPreset, seed: int, q: int) -> tuple[np.random.Generator, np.ndarray, np.ndarray]:
    """Per sequence: its random stream, cell centres (P, 2) and switch times (P, C-1), sorted."""
    rng = image_rng(seed, SEQUENCE_STREAM, q)
    P, sd = preset.sequence.population, preset.sequence.transition_sd_s
    lo, hi = preset.placement
    centres = rng.uniform(lo, hi, size=(P, 2))
    starts = np.array([c.time_s[0] for c in preset.classes[1:]], dtype=np.float64)
    switches = np.sort(starts[None, :] + rng.normal(0.0, sd, size=(P, starts.size)), axis=1)
    return rng, centres, switches


def stages_at(switches: np.ndarray, t: float) -> np.ndarray:
    """Stage index of every cell at time t."""
    return (switches <= t).sum(axis=1)


def frame_labels(preset: GeneratorPreset, seed: int, q: int) -> list[int]:
    """The label (majority stage, later stage on a tie) of every frame of sequence ``q``."""
    _, _, switches = _cells(preset, seed, q)
    C = len(preset.classes)
    out = []
    for f in range(preset.sequence.frames):
        counts = np.bincount(stages_at(switches, frame_time(preset, f)), minlength=C)
        out.append(int(C - 1 - np.argmax(counts[::-1])))
    return out


def sequence_scene(
    preset: GeneratorPreset, seed: int, q: int, frame: int, background: np.ndarray
) -> tuple[Scene, dict]:
    """The geometry of one frame and its extra metadata (time, temperature, stage ratios)."""
    rng, centres, switches = _cells(preset, seed, q)
    C = len(preset.classes)
    if preset.variation.palette == "random":
        ramps = [random_ramp(rng) for _ in range(C)]
    else:
        ramps = [(hex_to_rgb(c.colours[0]), hex_to_rgb(c.colours[1])) for c in preset.classes]
    t = frame_time(preset, frame)
    stage = stages_at(switches, t)
    kinds, radius, rgb = [], [], []
    segs, widths, owners, levels = [], [], [], []
    for cell in range(centres.shape[0]):
        k = int(stage[cell])
        spec = preset.classes[k]
        kinds.append(spec.name)
        radius.append(spec.spore_radius)
        rgb.append(ramp_colours(*ramps[k], centres[cell : cell + 1, 1])[0])
        if spec.depth == 0 or spec.branch_length == 0:
            continue
        # The same tree every frame: its stream depends on the cell and the stage only.
        tree_rng = image_rng(seed, SEQUENCE_STREAM, q, cell, k)
        seg, w, _, lev = grow_branches(
            tree_rng,
            preset.branching,
            centres[cell : cell + 1],
            np.array([spec.branch_length]),
            np.array([spec.branch_width]),
            np.array([spec.depth]),
            np.array([spec.root_branches]),
            np.array([cell]),
        )
        start = switches[cell, k - 1] if k > 0 else 0.0
        end = switches[cell, k] if k < C - 1 else preset.timeline_s
        progress = min(max((t - start) / max(end - start, 1e-9), 0.0), 1.0)
        shown = lev < max(1, int(np.ceil(progress * (int(lev.max()) + 1))))
        segs.append(seg[shown])
        widths.append(w[shown])
        owners.append(np.full(int(shown.sum()), cell))
        levels.append(lev[shown])
    cat = np.concatenate
    scene = Scene(
        background=background,
        struct_kind=kinds,
        struct_host=np.ones(len(kinds), dtype=bool),
        circle_xy=centres,
        circle_r=np.array(radius),
        struct_rgb=np.array(rgb),
        seg_xy=cat(segs) if segs else np.zeros((0, 4)),
        seg_width=cat(widths) if widths else np.zeros(0),
        seg_struct=cat(owners) if owners else np.zeros(0, np.int64),
        seg_level=cat(levels) if levels else np.zeros(0, np.int16),
        line_alpha=preset.line_alpha,
    )
    ratios = np.bincount(stage, minlength=C) / stage.size
    extra = {
        "time_s": round(t, 4),
        "temperature_K": round(temperature_at(preset, t), 4),
        **{f"ratio_{c.name}": float(ratios[i]) for i, c in enumerate(preset.classes)},
        "colour_start": None,
        "colour_end": None,
    }
    return scene, extra
