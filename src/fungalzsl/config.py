"""Config files: one YAML file may hold a section per stage (``generate``, ``describe``, ``train``,
``evaluate``); a file without sections is taken whole as the section asked for.

Named presets (``paper``, ``cpu-default``, ...) ship inside the package in ``fungalzsl/configs/``;
the repository's top-level ``configs/`` points at the same files."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from fungalzsl.errors import fail
from fungalzsl.io import read_text_file, regular_file

SECTIONS = ("generate", "describe", "train", "evaluate", "run")
M = TypeVar("M", bound=BaseModel)


def preset_names() -> list[str]:
    root = resources.files("fungalzsl") / "configs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path to a YAML file, or the name of a shipped preset (``paper``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.exists():  # a directory or a FIFO: say so rather than "not found"
        return regular_file(p, "config")
    if p.suffix == "" and str(p) in preset_names():
        return Path(str(resources.files("fungalzsl") / "configs" / f"{p}.yaml"))
    known = ", ".join(preset_names())
    raise fail(f"config {name_or_path!s} not found", f"give a YAML file path or one of the presets: {known}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = resolve_config_path(path)
    try:
        data = yaml.safe_load(read_text_file(path, "config"))
    except yaml.YAMLError as e:
        raise fail(f"{path} is not valid YAML ({str(e).splitlines()[0]})", "fix the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise fail(f"{path} must hold a mapping at the top level", "see configs/paper.yaml for the layout")
    return data


def load_section(path: str | Path | None, section: str) -> dict[str, Any]:
    """The ``section`` part of a config file ({} when ``path`` is None)."""
    if path is None:
        return {}
    data = load_yaml(path)
    if any(k in data for k in SECTIONS):
        sub = data.get(section) or {}
        if not isinstance(sub, dict):
            raise fail(f"section '{section}' of {path} must be a mapping", "see configs/paper.yaml")
        return sub
    return data


def validate(model: type[M], data: dict[str, Any], source: str) -> M:
    """Validate ``data`` into ``model``; turn pydantic's report into one line naming the bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise fail(f"{source}: {where}: {err['msg']}", "fix that setting") from None
