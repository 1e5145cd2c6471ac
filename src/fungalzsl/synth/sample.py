"""One image from one planned job: geometry, pixels and its metadata row."""

from __future__ import annotations

import json

import numpy as np

from fungalzsl.synth.colour import (
    apply_pixel_variation,
    background_colour,
    hex_to_rgb,
    random_ramp,
    rgb_to_hex,
)
from fungalzsl.synth.continuum import CONTINUUM_SPLITS, continuum_scene, growth_position
from fungalzsl.synth.geometry import Scene, build_scene, class_batches
from fungalzsl.synth.plan import Job
from fungalzsl.synth.preset import GeneratorPreset
from fungalzsl.synth.render import Renderer, encode_png, render, render_skia_png
from fungalzsl.synth.rng import image_rng
from fungalzsl.synth.style import PHOTO_STYLES


def class_scene(
    preset: GeneratorPreset, seed: int, job: Job, mode: str = "classes"
) -> tuple[Scene, dict, np.random.Generator]:
    """Geometry of a ``--mode classes`` image (or ``continuum``: synth.continuum), its
    time/temperature, and the stream for pixel noise."""
    rng = image_rng(seed, job.index)
    spec = preset.spec(job.label)
    t0, t1 = spec.time_s
    time_s = float(rng.uniform(t0, t1)) if t1 > t0 else t0
    frac = (time_s - t0) / (t1 - t0) if t1 > t0 else 0.0
    temperature = spec.temperature_K[0] + frac * (spec.temperature_K[1] - spec.temperature_K[0])
    background = background_colour(preset.variation, rng)
    random_palette = (lambda: random_ramp(rng)) if preset.variation.palette == "random" else None
    if mode == "continuum" and job.split in CONTINUUM_SPLITS:
        scene, host = continuum_scene(preset, job.label, time_s, rng, background)
    elif spec.kind is not None:
        from fungalzsl.synth.stages import stage_scene

        host = (
            random_palette() if random_palette else (hex_to_rgb(spec.colours[0]), hex_to_rgb(spec.colours[1]))
        )
        scene = stage_scene(preset, spec, rng, background, host)
    else:
        batches = class_batches(preset, job.label, rng, random_palette)
        scene = build_scene(preset, batches, rng, background)
        host = batches[0].ramp
    extra = {
        "time_s": round(time_s, 4),
        "temperature_K": round(temperature, 4),
        "colour_start": rgb_to_hex(host[0]),
        "colour_end": rgb_to_hex(host[1]),
    }
    if mode == "continuum":  # every row of a continuum dataset says where on the timeline it lies
        extra["growth_position"] = round(growth_position(preset, job.label, time_s), 4)
    return scene, extra, rng


def make_scene(
    preset: GeneratorPreset, seed: int, job: Job, mode: str
) -> tuple[Scene, dict, np.random.Generator]:
    if mode == "sequence":
        from fungalzsl.synth.sequence import sequence_scene

        rng = image_rng(seed, job.index)
        scene, extra = sequence_scene(
            preset, seed, job.sequence_id, job.frame, background_colour(preset.variation, rng)
        )
        return scene, extra, rng
    if preset.variation.style != "paper":
        from fungalzsl.synth.style import resolve_style, style_scene

        chosen = resolve_style(preset.variation.style, job.label, seed, job.index, paper_split(preset, job))
        if chosen != "paper":
            scene, extra = style_scene(chosen, preset, seed, job)
            return scene, extra, None  # type: ignore[return-value]  (no pixel stream without drawing)
        scene, extra, rng = class_scene(preset, seed, job)
        return scene, {**extra, **PAPER_STYLE_EXTRAS}, rng
    return class_scene(preset, seed, job, mode)


def paper_split(preset: GeneratorPreset, job: Job) -> bool:
    """Whether ``job`` lies in a split drawn in the paper's style (``variation.test_style: paper``)."""
    return preset.variation.test_style == "paper" and job.split == "test"


# What a photographic-style dataset records of the images it draws in the paper style (``mixed``).
PAPER_STYLE_EXTRAS = {"style": "paper", "imaging": "drawing", "stain": "none", "jpeg_quality": 0}


def make_pixels(
    preset: GeneratorPreset, seed: int, job: Job, size: int, renderer: Renderer, mode: str
) -> tuple[np.ndarray, Scene, dict]:
    """Pixels, scene and metadata extras of one image, in the preset's style."""
    if preset.variation.style != "paper" and mode == "classes":
        from fungalzsl.synth.style import resolve_style, style_image

        chosen = resolve_style(preset.variation.style, job.label, seed, job.index, paper_split(preset, job))
        if chosen != "paper":
            rgb, scene, extra, rng = style_image(chosen, preset, seed, job, size)
            return apply_pixel_variation(rgb, preset.variation, rng), scene, extra
    scene, extra, rng = make_scene(preset, seed, job, mode)
    rgb = apply_pixel_variation(render(scene, size, renderer), preset.variation, rng)
    return rgb, scene, extra


def metadata_row(preset: GeneratorPreset, seed: int, job: Job, scene: Scene, extra: dict, size: int) -> dict:
    """The metadata row of one image: where it is, what it shows, and the θ actually used."""
    spec = preset.spec(job.label)
    counts = scene.counts()
    overlap = {k: v for k, v in counts.items() if k != job.label}
    host_count = counts.get(job.label, 0)
    row = {
        "file_name": job.file_name,
        "split": job.split,
        "label": job.label,
        "label_id": job.label_id,
        "index": job.index,
        "seed": seed,
        "time_s": extra["time_s"],
        "temperature_K": extra["temperature_K"],
        "n_structures": host_count,
        "depth": spec.depth,
        "branch_length": spec.branch_length,
        "branch_width": spec.branch_width,
        "root_branches": spec.root_branches,
        "spore_radius": spec.spore_radius,
        "alpha": preset.branching.length_decay,
        "beta_low": preset.branching.width_factor[0],
        "beta_high": preset.branching.width_factor[1],
        "n_segments": scene.n_segments,
        "max_level": int(scene.seg_level.max()) + 1 if scene.n_segments else 0,
        "overlap": json.dumps(overlap, sort_keys=True),
        "n_overlap": int(sum(overlap.values())),
        "palette": preset.variation.palette,
        "colour_start": extra.get("colour_start"),
        "colour_end": extra.get("colour_end"),
        "background": rgb_to_hex(scene.background),
        "width": size,
        "height": size,
    }
    if "style" in extra:  # photographic styles only: paper datasets keep their columns
        row.update({k: extra[k] for k in PAPER_STYLE_EXTRAS})
    if "growth_position" in extra:
        row["growth_position"] = extra["growth_position"]
        row["continuum"] = job.split in CONTINUUM_SPLITS
    if job.sequence_id >= 0:
        row["sequence_id"] = job.sequence_id
        row["frame"] = job.frame
        row.update({k: v for k, v in extra.items() if k.startswith("ratio_")})
    return row


def make_image(
    preset: GeneratorPreset,
    seed: int,
    job: Job,
    size: int,
    renderer: Renderer = "fast",
    mode: str = "classes",
) -> tuple[np.ndarray, dict]:
    """Pixels (size, size, 3) uint8 and the metadata row of one planned image."""
    rgb, scene, extra = make_pixels(preset, seed, job, size, renderer, mode)
    return rgb, metadata_row(preset, seed, job, scene, extra, size)


def make_png(
    preset: GeneratorPreset,
    seed: int,
    job: Job,
    size: int,
    renderer: Renderer = "fast",
    mode: str = "classes",
) -> tuple[bytes, dict]:
    """PNG bytes and metadata row of one planned image; byte-identical to encoding ``make_image``'s
    pixels, but the clean skia case skips the RGB copy."""
    files, row = make_files(preset, seed, job, size, renderer, mode)
    return files["png"], row


def make_files(
    preset: GeneratorPreset,
    seed: int,
    job: Job,
    size: int,
    renderer: Renderer = "fast",
    mode: str = "classes",
    masks: bool = False,
) -> tuple[dict[str, bytes], dict]:
    """The files of one planned image by WebDataset extension — ``png`` (the image) and, with
    ``masks``, ``mask.png`` (class labels) and ``inst.png`` (instance ids) — and its metadata row
    (with ``n_instances`` and ``instance_labels`` when masks are made). The image does not depend on
    ``masks``: the masks use no random numbers and their own canvas."""
    v = preset.variation
    if v.style == "paper" and renderer == "fast" and not (v.grayscale or v.noise_sd > 0 or v.blur_radius > 0):
        scene, extra, _ = make_scene(preset, seed, job, mode)
        png = render_skia_png(scene, size)
    else:
        rgb, scene, extra = make_pixels(preset, seed, job, size, renderer, mode)
        png = encode_png(rgb, photo=extra.get("style") in PHOTO_STYLES)
    row = metadata_row(preset, seed, job, scene, extra, size)
    files = {"png": png}
    if masks:
        from fungalzsl.synth.masks import encode_masks, render_masks

        labels, instances = render_masks(scene, size, preset.class_names)
        files["mask.png"], files["inst.png"] = encode_masks(labels, instances)
        row.update(instance_row(scene, preset.class_names))
    return files, row


def instance_row(scene: Scene, class_names: list[str]) -> dict:
    """Metadata of the instance ids: id i (1-based) is structure i-1 in draw order; its mask label."""
    index = {c: i + 1 for i, c in enumerate(class_names)}
    return {
        "n_instances": len(scene.struct_kind),
        "instance_labels": json.dumps([index[k] for k in scene.struct_kind]),
    }


def make_masks(
    preset: GeneratorPreset, seed: int, job: Job, size: int, mode: str = "classes"
) -> tuple[np.ndarray, np.ndarray]:
    """Segmentation masks of one planned image, aligned with ``make_image``'s pixels: labels
    (size, size) uint8 (0 background, 1 + class index) and instance ids (size, size) uint16."""
    from fungalzsl.synth.masks import render_masks

    scene, _, _ = make_scene(preset, seed, job, mode)
    return render_masks(scene, size, preset.class_names)
