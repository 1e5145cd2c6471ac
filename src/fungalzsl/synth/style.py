"""Imaging styles: the paper's drawings, micrographs, colony photographs, or a per-image mix.

``--style`` (preset ``variation.style``):

* ``paper`` — the paper's flat drawings, exactly as before (this module is not used).
* ``micrograph`` — every class as a microscope photograph (``synth.micro`` draws the structures,
  ``synth.optics`` the field, the optics and the camera).
* ``colony`` — mycelium as a macro photograph of a colony on agar in a Petri dish, or a mat on grain
  (``synth.colony``); spore and hyphae as micrographs, because a plate photograph cannot show a
  single spore or hypha.
* ``mixed`` — per image, paper 25%, micrograph 50%, colony 25% (:data:`MIXED_WEIGHTS`; the colony
  share of spore and hyphae images is drawn as micrographs, as in ``colony``).

``variation.test_style: paper`` draws the test split in the paper's style whatever ``style`` says: the
paper's own test images (the same bytes as a paper set's, index by index) beside photographic
train/val images, so a model trained for real images is still scored on the paper's test.

Randomness: the styles never touch image ``i``'s paper stream ``SeedSequence([seed, i])``; they
draw from their own streams ``SeedSequence([seed, i, STYLE_STREAM, k])``: k = 0 picks the style
(always drawn, so a mixed set's micrographs are the micrograph set's), 1 is the optics (the field,
stain, artefacts, camera: one distribution for every class), 2 the structures."""

from __future__ import annotations

from typing import Any

import numpy as np

from fungalzsl.synth.geometry import Scene
from fungalzsl.synth.plan import Job
from fungalzsl.synth.preset import GeneratorPreset
from fungalzsl.synth.rng import image_rng

STYLE_STREAM = 1 << 21  # apart from the image index and SEQUENCE_STREAM
# Which drawing code made a photographic style's pixels (as plan.IMAGE_ALGORITHM for the paper's):
# part of a styled dataset's settings, so --resume and --shard never mix two versions.
# 1: first micrographs and colonies; 2: no halo on hairlines outside phase contrast, camera in 0-255,
# hyphae that pass through the field. 3: one noise window and a (3, 3) mix in the camera, aliased
# halos outside phase contrast (both cheaper). 4: cells built as one numpy path, the exposure from
# the field's known mean (last-bit float differences), PNGs Up-filtered by our own encoder.
# 5: packed masses and chains of touching spores, thicker septate hyphae, a pink stain, deeper defocus.
STYLE_ALGORITHM = 5
MIXED_WEIGHTS = {"paper": 0.25, "micrograph": 0.5, "colony": 0.25}
PHOTO_STYLES = ("micrograph", "colony")


def style_rngs(seed: int, index: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """The style-choice, optics and structure streams of image ``index``."""
    return tuple(image_rng(seed, index, STYLE_STREAM, k) for k in range(3))  # type: ignore[return-value]


def resolve_style(style: str, label: str, seed: int, index: int, paper_split: bool = False) -> str:
    """The style image ``index`` is drawn in: ``paper``, ``micrograph`` or ``colony``;
    ``paper_split``: the image is in a split drawn in the paper's style (``variation.test_style``)."""
    if paper_split:
        return "paper"
    u = float(image_rng(seed, index, STYLE_STREAM, 0).uniform())  # the choice stream only
    if style == "mixed":
        edges = np.cumsum(list(MIXED_WEIGHTS.values()))
        style = list(MIXED_WEIGHTS)[int(np.searchsorted(edges, u, side="right"))]
    if style == "colony" and label != "mycelium":
        return "micrograph"  # no macro photograph shows a single spore or hypha
    return style


def _time(preset: GeneratorPreset, job: Job, rng: np.random.Generator) -> dict[str, float]:
    """Time and temperature in the class's slot, as the paper's images record them."""
    spec = preset.spec(job.label)
    (t0, t1), (k0, k1) = spec.time_s, spec.temperature_K
    time_s = float(rng.uniform(t0, t1)) if t1 > t0 else t0
    frac = (time_s - t0) / (t1 - t0) if t1 > t0 else 0.0
    return {"time_s": round(time_s, 4), "temperature_K": round(k0 + frac * (k1 - k0), 4)}


def _look(style: str, job: Job, optics_rng: np.random.Generator) -> Any:
    if style == "colony":
        from fungalzsl.synth.colony import sample_look

        return sample_look(optics_rng)
    from fungalzsl.synth.optics import sample_optics

    return sample_optics(optics_rng)


def _scene(style: str, job: Job, look: Any, rng: np.random.Generator) -> Scene:
    if style == "colony":
        from fungalzsl.synth.colony import colony_scene

        return colony_scene(rng, look)
    from fungalzsl.synth.micro import micro_scene

    return micro_scene(job.label, rng, look.background)


def style_scene(style: str, preset: GeneratorPreset, seed: int, job: Job) -> tuple[Scene, dict]:
    """The geometry of a photographic-style image and its metadata extras, without drawing it."""
    choice, optics_rng, struct_rng = style_rngs(seed, job.index)
    choice.uniform()
    look = _look(style, job, optics_rng)
    scene = _scene(style, job, look, struct_rng)
    return scene, {**_time(preset, job, choice), **_extras(style, look)}


def _extras(style: str, look: Any) -> dict[str, Any]:
    return {
        "style": style,
        "imaging": look.imaging,
        "stain": look.stain,
        "jpeg_quality": int(look.jpeg_quality),
        "colour_start": None,
        "colour_end": None,
    }


def _rgb(bgra: np.ndarray) -> np.ndarray:
    """(size, size, 3) RGB from skia's BGRA canvas: Pillow's C unpacker, ~3x faster than numpy's
    strided copy."""
    from PIL import Image

    size = bgra.shape[0]
    return np.asarray(Image.frombuffer("RGB", (size, size), bgra, "raw", "BGRX", 0, 1))


def _soften(buf: np.ndarray, canvas: Any, soft_sigma: float) -> None:
    """A soft lens (:func:`optics.soft_factor`), in place on the drawn BGRA canvas: box-reduced by f
    (Pillow; an average does not care about the channel order) and scaled back up bilinearly by skia,
    which is ~2x faster than Pillow's resize. (The reduced picture is opaque, so drawing it over the
    canvas replaces it; skia's kSrc mode would take a 7x slower pipeline.)"""
    import skia
    from PIL import Image

    from fungalzsl.synth.optics import soft_factor

    size = buf.shape[0]
    f = soft_factor(soft_sigma, size)
    if f == 1:
        return
    small = np.asarray(Image.frombuffer("RGBA", (size, size), buf, "raw", "RGBA", 0, 1).reduce(f))
    image = skia.Image.fromarray(np.ascontiguousarray(small), colorType=skia.kBGRA_8888_ColorType)
    side = float(small.shape[1] * f)
    canvas.drawImageRect(image, skia.Rect.MakeWH(side, side), skia.SamplingOptions(skia.FilterMode.kLinear))


def style_image(
    style: str, preset: GeneratorPreset, seed: int, job: Job, size: int
) -> tuple[np.ndarray, Scene, dict, np.random.Generator]:
    """Pixels (size, size, 3) uint8 of a photographic-style image, its scene, metadata extras and the
    stream left for the preset's pixel variations (noise)."""
    import skia

    choice, optics_rng, struct_rng = style_rngs(seed, job.index)
    choice.uniform()
    extra = _time(preset, job, choice)
    look = _look(style, job, optics_rng)
    scene = _scene(style, job, look, struct_rng)
    buf = np.empty((size, size, 4), dtype=np.uint8)
    surface = skia.Surface(buf, colorType=skia.kBGRA_8888_ColorType, alphaType=skia.kPremul_AlphaType)
    canvas = surface.getCanvas()
    if style == "colony":
        from fungalzsl.synth.colony import draw_colony

        draw_colony(canvas, scene, look, struct_rng, size)
    else:
        from fungalzsl.synth.micro import draw_micro, micro_decor
        from fungalzsl.synth.optics import draw_over, draw_under

        decor = micro_decor(scene, struct_rng, look.defocus_share)
        draw_under(canvas, look, optics_rng, size)
        draw_micro(canvas, scene, decor, look, size)
        draw_over(canvas, look, optics_rng, size)
    _soften(buf, canvas, look.soft_sigma)
    del canvas, surface
    if style == "colony":
        from fungalzsl.synth.colony import finish_colony

        return (
            finish_colony(_rgb(buf), look, optics_rng),
            scene,
            {**extra, **_extras(style, look)},
            optics_rng,
        )
    from fungalzsl.synth.optics import finish

    return finish(_rgb(buf), look, optics_rng), scene, {**extra, **_extras(style, look)}, optics_rng
