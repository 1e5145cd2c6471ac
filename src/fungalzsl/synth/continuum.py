"""The growth continuum (``fungalzsl generate --mode continuum``): training images sampled along the
whole timeline, so a model also sees the states between the paper's three islands.

Each training image keeps the class and split of ``--mode classes`` (the plan is the same) and its
growth time t ~ U(slot of its class), but its structures are drawn at the growth position
u = class rank + (t − t0)/(t1 − t0) ∈ [0, C) of the timeline (classes ranked by their slots), with θ
interpolated between the neighbouring classes: up to the middle of the spore slot plain spores; from
there to the middle of the hyphae slot the disc shrinks while one, then more, short branches sprout and
lengthen (spores with germ tubes of growing length, then young hyphae); from the hyphae's middle to the
mycelium's the network grows deeper, longer and denser. The label is the class whose slot t falls in
(a threshold on t); the grounded captions describe what each image shows (short tubes, branches,
density), never a class name. Val and test images are drawn exactly as in ``--mode classes``, so the
paper's test split stays the paper's. No test-only stage of synth.stages is drawn: every image is discs
and branch trees of the paper's kind (``grow_branches``)."""

from __future__ import annotations

import numpy as np

from fungalzsl.errors import fail
from fungalzsl.synth.colour import hex_to_rgb, random_ramp, rgb_to_hex
from fungalzsl.synth.geometry import Scene, _Batch, build_scene, class_batches
from fungalzsl.synth.preset import ClassSpec, GeneratorPreset

CONTINUUM_SPLITS = ("train",)


def ordered_classes(preset: GeneratorPreset) -> list[ClassSpec]:
    """The preset's (non test-only) classes in timeline order; all must be of the paper's kind."""
    specs = sorted(preset.classes, key=lambda c: c.time_s[0])
    odd = [c.name for c in specs if c.kind is not None]
    if odd:
        raise fail(
            f"--mode continuum interpolates discs and branch trees; class(es) {', '.join(odd)} are drawn otherwise",
            "use a preset whose classes have no 'kind'",
        )
    return specs


def growth_position(preset: GeneratorPreset, label: str, time_s: float) -> float:
    """u ∈ [0, C): the rank of ``label``'s slot on the timeline plus the fraction of the slot at t."""
    specs = ordered_classes(preset)
    k = [c.name for c in specs].index(label)
    t0, t1 = specs[k].time_s
    frac = (time_s - t0) / (t1 - t0) if t1 > t0 else 0.5
    return k + min(max(frac, 0.0), 1.0 - 1e-9)


def _lerp(a: float, b: float, s: float) -> float:
    return a + (b - a) * s


def continuum_spec(preset: GeneratorPreset, u: float) -> tuple[ClassSpec, tuple[np.ndarray, np.ndarray]]:
    """θ and colour ramp at growth position ``u``: the spec of the class whose middle is nearest below
    u, blended toward the next one's by the distance between the two middles."""
    specs = ordered_classes(preset)
    k = int(np.clip(np.floor(u - 0.5), 0, len(specs) - 1))
    s = float(np.clip(u - 0.5 - k, 0.0, 1.0))
    a, b = specs[k], specs[min(k + 1, len(specs) - 1)]
    if a is b or s == 0.0:
        ramp = (hex_to_rgb(a.colours[0]), hex_to_rgb(a.colours[1]))
        return a, ramp
    depth = round(_lerp(a.depth, b.depth, s))
    if a.depth == 0 and s > 0.05:
        depth = max(depth, 1)  # a sprouting spore: one level of tube before any branching
    # A new tube grows from nothing: length rises from 0 when the earlier class has no branches.
    length = _lerp(a.branch_length, b.branch_length, s)
    roots = round(_lerp(a.root_branches, b.root_branches, s))
    spec = a.model_copy(
        update={
            "depth": depth if length > 0 else 0,
            "branch_length": length,
            "root_branches": roots if depth else 0,
            "spore_radius": _lerp(a.spore_radius, b.spore_radius, s),
            "branch_width": _lerp(a.branch_width or b.branch_width, b.branch_width, s),
        }
    )
    ramp = tuple(_lerp_rgb(hex_to_rgb(x), hex_to_rgb(y), s) for x, y in zip(a.colours, b.colours))
    return spec, ramp  # type: ignore[return-value]


def _lerp_rgb(x: np.ndarray, y: np.ndarray, s: float) -> np.ndarray:
    return x + (y - x) * s


def continuum_scene(
    preset: GeneratorPreset,
    label: str,
    time_s: float,
    rng: np.random.Generator,
    background: np.ndarray,
) -> tuple[Scene, tuple[np.ndarray, np.ndarray]]:
    """The scene of one continuum image: the label class's overlaps as in ``--mode classes`` (drawn from
    the same stream), its host structures at the interpolated θ of its growth position."""
    u = growth_position(preset, label, time_s)
    spec, ramp = continuum_spec(preset, u)
    random_palette = (lambda: random_ramp(rng)) if preset.variation.palette == "random" else None
    batches = class_batches(preset, label, rng, random_palette)
    if random_palette is not None:
        ramp = batches[0].ramp
    host = _Batch(spec.model_copy(update={"name": label}), batches[0].count, ramp, True)
    scene = build_scene(preset, [host, *batches[1:]], rng, background)
    scene.notes = {"growth_position": round(u, 4)}
    return scene, ramp


def ramp_hex(ramp: tuple[np.ndarray, np.ndarray]) -> tuple[str, str]:
    return rgb_to_hex(ramp[0]), rgb_to_hex(ramp[1])
