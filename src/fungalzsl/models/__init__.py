"""The model registry: ``build_model(spec)`` for ``lite``, ``openclip:…`` and ``hf:…``, and
``load_run(run_dir)`` for trained runs. Every model answers the interface in :mod:`.base`.

Imports are lazy so that building the CLI (every command's ``--help``) does not import torch."""

from __future__ import annotations

from typing import Any

from fungalzsl.models.specs import SPEC_HELP

__all__ = ["SPEC_HELP", "TwoTowerModel", "build_model", "load_run", "load_weights", "save_weights"]


def __getattr__(name: str) -> Any:
    if name == "TwoTowerModel":
        from fungalzsl.models.base import TwoTowerModel

        return TwoTowerModel
    if name in ("build_model", "load_run", "load_weights", "save_weights"):
        from fungalzsl.models import registry

        return getattr(registry, name)
    raise AttributeError(name)
