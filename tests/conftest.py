"""Shared fixtures. Tests never touch the network: hubs are forced offline here."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("FUNGALZSL_NO_REEXEC", "1")

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RELEASE = SHARED / "data" / "fungalzsl-release"


@pytest.fixture(scope="session")
def release_dir() -> Path:
    if not RELEASE.is_dir():
        pytest.skip(f"authors' release files not found at {RELEASE}")
    return RELEASE


TINY_CONFIG = {
    "generate": {"preset": "paper", "num_images": 60, "size": 64, "seed": 0},
    "describe": {"backend": "bank", "per_class": 20, "seed": 0},
    "train": {
        "model": "lite",
        "epochs": 2,
        "batch_size": 16,
        "unfreeze_every": 1,
        "unfreeze_max": {"image": 1, "text": 0},
        "image_size": 64,
        "embed_dim": 32,
        "warmup_steps": 0,
        "progress": False,
    },
    "evaluate": {"split": "test", "baseline": False, "n_boot": 50},
}


def write_tiny_config(path: Path, **changes: dict) -> Path:
    """A pipeline config small enough for tests (60 images of 64 px, 2 epochs)."""
    import copy

    import yaml

    cfg = copy.deepcopy(TINY_CONFIG)
    for section, values in changes.items():
        cfg[section].update(values)
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> Path:
    """A whole ``fungalzsl run`` on tiny settings, shared by the predict/serve/export tests."""
    from fungalzsl.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("tiny_pipeline")
    cfg = write_tiny_config(root / "tiny.yaml")
    run_pipeline(root / "out", cfg, log=lambda _m: None)
    return root / "out"
