"""Synthetic fungi images (spore, hyphae, mycelium) as in the FungalZSL paper §2.1, and the dataset writer.

Modules: ``preset`` (the settings), ``plan`` (which image goes where), ``rng`` (per-image random
streams), ``geometry``/``sequence``/``colour`` (what is drawn), ``render``/``masks`` (pixels),
``sample`` (one image's files and metadata row), ``workers`` (the process pool that makes them),
``layout`` (where files go on disk, metadata, manifest, resume), ``style`` (``--style``: which look an
image gets) with ``optics`` (microscope field, stain, artefacts, camera), ``micro`` (micrograph
structures) and ``colony`` (plates and grain), ``generate`` (``generate_dataset``),
``release`` (importing the authors' published dataset), ``cli`` (``fungalzsl generate``).

Python API::

    from fungalzsl.synth import generate_dataset, load_preset
    generate_dataset("data/fungi", "paper", num_images=600, size=224, seed=0, palette="random")
    generate_dataset("data/seg", "paper", num_images=600, masks=True)  # + segmentation masks
    generate_dataset("data/micro", "paper", num_images=600, style="micrograph")  # photographic look
"""

from fungalzsl.synth.generate import generate_dataset
from fungalzsl.synth.masks import label_map, render_masks
from fungalzsl.synth.plan import Job, plan_classes, plan_sequences
from fungalzsl.synth.preset import GeneratorPreset, load_preset, with_overrides
from fungalzsl.synth.render import encode_png, render, render_matplotlib, render_skia
from fungalzsl.synth.rng import image_rng
from fungalzsl.synth.sample import make_files, make_image, make_masks, make_png, make_scene

__all__ = [
    "GeneratorPreset",
    "Job",
    "encode_png",
    "generate_dataset",
    "image_rng",
    "label_map",
    "load_preset",
    "make_files",
    "make_image",
    "make_masks",
    "make_png",
    "make_scene",
    "plan_classes",
    "plan_sequences",
    "render",
    "render_masks",
    "render_matplotlib",
    "render_skia",
    "with_overrides",
]
