"""The model registry: ``build_model(spec)`` for ``lite``, ``openclip:…`` and ``hf:…``, and
``load_run(run_dir)`` for trained runs. Every model answers the interface in :mod:`.base`."""

from fungalzsl.models.base import TwoTowerModel
from fungalzsl.models.registry import SPEC_HELP, build_model, load_run, load_weights, save_weights

__all__ = ["SPEC_HELP", "TwoTowerModel", "build_model", "load_run", "load_weights", "save_weights"]
