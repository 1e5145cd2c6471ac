"""Importing the authors' released split files (the real ones in ../shared/data) into our layout."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from fungalzsl.cli import app
from fungalzsl.images import list_split
from fungalzsl.synth.release import import_release

SPLITS = ("train", "val", "test")


def _records(release_dir, split):
    return json.loads((release_dir / f"{split}_data.json").read_text())


@pytest.fixture
def images(tmp_path, release_dir):
    """Tiny stand-ins for a handful of referenced images, laid out as the Mendeley download is."""
    root = tmp_path / "download"
    made = {}
    for split, n in zip(SPLITS, (6, 3, 3)):
        recs = _records(release_dir, split)
        by_class: dict[str, list] = {}
        for r in recs:
            by_class.setdefault(r["class_label"], []).append(r)
        picked = [r for c in by_class for r in by_class[c][: n // 3]]
        for r in picked:
            p = root / r["image_path"].lstrip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), (255, 200, 0)).save(p)
        made[split] = picked
    return root, made


def test_import_all_splits(tmp_path, release_dir, images):
    root, made = images
    files = [release_dir / f"{s}_data.json" for s in SPLITS]
    man = import_release(files, root, tmp_path / "out", allow_missing=True)
    out = tmp_path / "out"
    assert man["classes"] == ["spore", "hyphae", "mycelium"]
    assert {s: v["count"] for s, v in man["splits"].items()} == {"train": 6, "val": 3, "test": 3}
    assert man["source"]["missing"] == 6000 - 12
    assert len((out / "missing.txt").read_text().splitlines()) == 6000 - 12
    rows = pq.read_table(out / "metadata.parquet").to_pylist()
    released = {r["image_path"]: r for s in SPLITS for r in made[s]}
    for row in rows:
        src = released[row["source_path"]]
        assert row["label"] == src["class_label"] and row["temperature_K"] == src["temperature"]
        assert row["description"] == src["description"]
        assert (out / row["file_name"]).is_file()
    # Hard links by default: no second copy of the user's images.
    first = rows[0]
    assert (out / first["file_name"]).stat().st_ino == (root / first["source_path"].lstrip("/")).stat().st_ino
    # Readers of our layout see it as a normal dataset.
    train = list_split(out, "train")
    assert len(train) == 6 and train.classes == ["spore", "hyphae", "mycelium"]


def test_missing_images_fail_with_one_line_and_write_nothing(tmp_path, release_dir, images):
    root, _ = images
    res = CliRunner().invoke(
        app,
        ["generate", "import-fungalzsl", str(release_dir / "val_data.json"), "--images", str(root),
         "--out", str(tmp_path / "out")],
    )  # fmt: skip
    assert res.exit_code == 2
    err = res.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1
    assert "597 of 600 referenced images are missing" in err and "--allow-missing" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cli_import_found_images(tmp_path, release_dir, images):
    root, _made = images
    # The user may point --images at the folder that holds train/ directly.
    res = CliRunner().invoke(
        app,
        ["generate", "import-fungalzsl", str(release_dir / "test_data.json"), "--images", str(root / "Dataset"),
         "--out", str(tmp_path / "out"), "--allow-missing", "--copy"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "imported 3 images" in res.stdout
    assert json.loads((tmp_path / "out/dataset.json").read_text())["splits"]["test"]["count"] == 3


def test_bad_split_file(tmp_path):
    bad = tmp_path / "train_data.json"
    bad.write_text('{"not": "a list"}')
    (tmp_path / "imgs").mkdir()
    res = CliRunner().invoke(
        app,
        [
            "generate",
            "import-fungalzsl",
            str(bad),
            "--images",
            str(tmp_path / "imgs"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2 and res.stderr.startswith("error:") and "JSON list" in res.stderr
    bad.write_text("[{")
    res = CliRunner().invoke(
        app,
        [
            "generate",
            "import-fungalzsl",
            str(bad),
            "--images",
            str(tmp_path / "imgs"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2 and "not valid JSON" in res.stderr
    res = CliRunner().invoke(
        app,
        [
            "generate",
            "import-fungalzsl",
            str(bad),
            "--images",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2 and "--images" in res.stderr
