"""``variation.test_style: paper``: photographic train/val images beside the paper's own test images."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fungalzsl.synth import generate_dataset, load_preset, with_overrides


def _hashes(root: Path, split: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / split).rglob("*.png"))}


def test_the_test_split_is_the_paper_sets_test_split_byte_for_byte_and_train_stays_mixed(tmp_path):
    kw = {"num_images": 30, "size": 48, "seed": 3, "workers": 1, "progress": False}
    generate_dataset(tmp_path / "paper", "paper", **kw)
    generate_dataset(tmp_path / "mixed", "paper", style="mixed", **kw)
    both = with_overrides(load_preset("paper"), style="mixed", test_style="paper")
    generate_dataset(tmp_path / "both", both, **kw)
    assert _hashes(tmp_path / "both", "test") == _hashes(tmp_path / "paper", "test")
    assert _hashes(tmp_path / "both", "test") != _hashes(tmp_path / "mixed", "test")
    for split in ("train", "val"):
        assert _hashes(tmp_path / "both", split) == _hashes(tmp_path / "mixed", split)
    rows = [json.loads(x) for x in (tmp_path / "both" / "metadata.jsonl").read_text().splitlines()]
    assert {r["style"] for r in rows if r["split"] == "test"} == {"paper"}
    assert {r["style"] for r in rows if r["split"] == "train"} >= {"micrograph", "paper"}
    manifest = json.loads((tmp_path / "both" / "dataset.json").read_text())
    assert manifest["preset"]["settings"]["variation"]["test_style"] == "paper"


def test_the_default_same_is_not_written_so_existing_hashes_stay():
    mixed = with_overrides(load_preset("paper"), style="mixed")
    assert "test_style" not in mixed.to_dict()["variation"]
    assert with_overrides(mixed, test_style="same").hash() == mixed.hash()
    assert with_overrides(mixed, test_style="paper").hash() != mixed.hash()


def test_cpu_default_trains_on_mixed_styles_and_tests_on_the_papers_images():
    from fungalzsl.config import load_section, resolve_config_path
    from fungalzsl.synth.settings import load_generate_settings

    preset, _, _, settings = load_generate_settings(
        resolve_config_path("cpu-default"), load_section("cpu-default", "generate")
    )
    assert (preset.variation.style, preset.variation.test_style) == ("mixed", "paper")
    assert "style_algorithm" in settings  # a drawing-code upgrade remakes the data
