"""The ``generate:`` section of a pipeline config, as ``fungalzsl run`` reads it.

The section is either a whole generator preset (it has ``classes``, as in configs/paper.yaml) or a
reference to one (``preset: paper``) plus overrides (num_images, size, palette, ...); ``seed`` and
``mode`` sit beside either form."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import fungalzsl.synth.plan as plan
from fungalzsl.config import validate
from fungalzsl.synth.preset import GeneratorPreset, resolve_preset


class GenerateSettings(NamedTuple):
    """What the generate stage makes: the preset, seed and mode, and ``settings``, the stage's cache
    key material (everything that decides the images' bytes)."""

    preset: GeneratorPreset
    seed: int
    mode: str
    settings: dict[str, Any]


def load_generate_settings(config: Path, section: dict[str, Any]) -> GenerateSettings:
    """Validate a ``generate:`` section of ``config`` (named in error messages)."""
    section = dict(section)
    seed = int(section.pop("seed", 0))
    mode = str(section.pop("mode", "classes"))
    if "classes" in section:
        preset = validate(GeneratorPreset, section, f"{config.name}: generate")
    else:
        preset = resolve_preset(section.pop("preset", "paper"), **section)
    # The image algorithm is part of the stage key: after an upgrade that changes the pixels, the
    # data (and everything trained on it) is made again instead of mixing two versions. Read at call
    # time from the plan module, its one home.
    settings = {
        "preset": preset.model_dump(mode="json"),
        "seed": seed,
        "mode": mode,
        "algorithm": plan.IMAGE_ALGORITHM,
    }
    if preset.variation.style != "paper":  # paper stage keys stay as they were
        from fungalzsl.synth.style import STYLE_ALGORITHM

        settings["style_algorithm"] = STYLE_ALGORITHM
    return GenerateSettings(preset, seed, mode, settings)
