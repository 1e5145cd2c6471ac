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
