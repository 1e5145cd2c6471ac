"""Hostile release split files: one reader (``fungalzsl.release_split``) serves ``generate
import-fungalzsl`` and ``evaluate --data *_data.json``, and neither writes outside ``--out`` nor reads
outside ``--images``, whatever the records say (``..``, absolute paths, symlinks, odd class labels)."""

from __future__ import annotations

import json
import os

import pytest
from PIL import Image
from typer.testing import CliRunner

from fungalzsl.cli import app
from fungalzsl.errors import FungalError
from fungalzsl.eval.sources import load_release_split
from fungalzsl.release_split import find_images, read_split_file


@pytest.fixture
def layout(tmp_path):
    """tmp/dl/images/Dataset/train/{spore_0.png,.bashrc}, a secret and a victim file outside both."""
    images = tmp_path / "dl" / "images"
    (images / "Dataset" / "train").mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 100, 0)).save(images / "Dataset" / "train" / "spore_0.png")
    (images / "Dataset" / "train" / ".bashrc").write_text("attacker's shell start-up\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("private\n")
    victim = tmp_path / "home" / ".bashrc"
    victim.parent.mkdir()
    victim.write_text("the user's own\n")
    return {"images": images, "out": tmp_path / "out", "secret": secret, "victim": victim, "tmp": tmp_path}


def _split_file(tmp_path, records, name="train_data.json"):
    p = tmp_path / name
    p.write_text(json.dumps(records))
    return p


def _import(split, layout, *extra):
    return CliRunner().invoke(
        app,
        ["generate", "import-fungalzsl", str(split), "--images", str(layout["images"]),
         "--out", str(layout["out"]), "--allow-missing", *extra],
    )  # fmt: skip


def _nothing_leaked(layout):
    assert layout["victim"].read_text() == "the user's own\n"
    assert not (layout["tmp"] / "home" / "spore").exists()
    out = layout["out"]
    assert not any(out.rglob("*.txt")) and not any(out.rglob(".bashrc"))
    leaked = [
        p
        for p in layout["tmp"].rglob("*")
        if p.is_file() and not p.is_symlink() and p.read_bytes() == b"private\n"
    ]
    assert leaked == [layout["secret"]]


@pytest.mark.parametrize(
    ("record", "needle"),
    [
        # the two records: a class label that climbs out of --out, a path that climbs out of --images
        ({"image_path": "/Dataset/train/.bashrc", "class_label": "../../home"}, "class_label"),
        ({"image_path": "/../../secret.txt", "class_label": "spore"}, "image_path"),
        ({"image_path": "/Dataset/train/spore_0.png", "class_label": "/abs"}, "class_label"),
        ({"image_path": "/Dataset/train/spore_0.png", "class_label": ".."}, "class_label"),
        ({"image_path": "/Dataset/train/spore_0.png", "class_label": "a\\b"}, "class_label"),
        ({"image_path": "/Dataset/train/.bashrc", "class_label": "spore"}, "image_path"),
        ({"image_path": "/Dataset/../../../secret.txt", "class_label": "spore"}, "image_path"),
    ],
)
def test_crafted_records_are_refused_before_anything_is_written(layout, record, needle):
    good = {"image_path": "/Dataset/train/spore_0.png", "class_label": "spore"}
    split = _split_file(layout["tmp"], [good, record])
    res = _import(split, layout)
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in res.output
    assert "record 1" in err and needle in err  # names the record and the field
    _nothing_leaked(layout)
    assert not layout["out"].exists() or not any(layout["out"].iterdir())


def test_a_file_name_from_a_common_parent_cannot_make_an_absolute_destination(layout):
    # "/x.png" has no split folder; the split must not become "" (out / "/spore/x.png" is absolute)
    Image.new("RGB", (8, 8)).save(layout["images"] / "x.png")
    label = "fungalzsl_abs_probe"  # old code wrote /fungalzsl_abs_probe/x.png
    split = _split_file(layout["tmp"], [{"image_path": "/x.png", "class_label": label}], "mine.json")
    res = _import(split, layout)
    assert res.exit_code == 0, res.output
    assert (layout["out"] / "mine" / label / "x.png").is_file()
    assert not os.path.exists(f"/{label}")


def test_a_symlink_inside_images_to_a_file_outside_is_refused(layout):
    link = layout["images"] / "Dataset" / "train" / "spore_1.png"
    link.symlink_to(layout["secret"])
    split = _split_file(layout["tmp"], [{"image_path": "/Dataset/train/spore_1.png", "class_label": "spore"}])
    res = _import(split, layout)
    assert res.exit_code == 2 and "outside --images" in res.stderr and "record 0" in res.stderr
    _nothing_leaked(layout)
    # the unique-file-name fallback resolves links too
    split = _split_file(layout["tmp"], [{"image_path": "/elsewhere/spore_1.png", "class_label": "spore"}])
    res = _import(split, layout)
    assert res.exit_code == 2 and "outside --images" in res.stderr
    _nothing_leaked(layout)


def test_a_symlinked_folder_inside_images_may_not_lead_outside(layout):
    outside = layout["tmp"] / "elsewhere"
    outside.mkdir()
    Image.new("RGB", (8, 8)).save(outside / "spore_9.png")
    (layout["images"] / "Dataset" / "val").symlink_to(outside, target_is_directory=True)
    split = _split_file(layout["tmp"], [{"image_path": "/Dataset/val/spore_9.png", "class_label": "spore"}])
    res = _import(split, layout)
    assert res.exit_code == 2 and "outside --images" in res.stderr


def test_images_given_through_a_symlink_still_work(layout):
    alias = layout["tmp"] / "alias"
    alias.symlink_to(layout["images"], target_is_directory=True)
    split = _split_file(layout["tmp"], [{"image_path": "/Dataset/train/spore_0.png", "class_label": "spore"}])
    res = CliRunner().invoke(
        app,
        ["generate", "import-fungalzsl", str(split), "--images", str(alias), "--out", str(layout["out"])],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (layout["out"] / "train" / "spore" / "spore_0.png").is_file()


def test_a_symlink_in_out_cannot_redirect_the_destination(layout):
    # a previous import in --out (so --overwrite applies) with a split folder that is a link elsewhere
    out, victim_dir = layout["out"], layout["tmp"] / "victim_dir"
    victim_dir.mkdir()
    out.mkdir()
    (out / "dataset.json").write_text(json.dumps({"settings_hash": "import", "splits": {}}))
    (out / "train").symlink_to(victim_dir, target_is_directory=True)
    split = _split_file(layout["tmp"], [{"image_path": "/Dataset/train/spore_0.png", "class_label": "spore"}])
    res = _import(split, layout, "--overwrite")
    assert res.exit_code == 2 and "outside --out" in res.stderr, res.output
    assert not any(victim_dir.iterdir())


def test_evaluate_reads_release_splits_with_the_same_rule(layout):
    images = layout["images"]
    good = {"image_path": "/Dataset/train/spore_0.png", "class_label": "spore"}
    escape = {"image_path": "/../../secret.txt", "class_label": "spore"}
    with pytest.raises(FungalError, match=r"record 1.*image_path"):
        load_release_split(_split_file(layout["tmp"], [good, escape], "test_data.json"), images)
    (images / "Dataset" / "train" / "spore_1.png").symlink_to(layout["secret"])
    linked = {"image_path": "/Dataset/train/spore_1.png", "class_label": "spore"}
    with pytest.raises(FungalError, match="outside --images"):
        load_release_split(_split_file(layout["tmp"], [good, linked], "test_data.json"), images)
    s = load_release_split(_split_file(layout["tmp"], [good], "test_data.json"), images)
    assert s.paths == [images / "Dataset" / "train" / "spore_0.png"] and s.classes == ["spore"]


def test_one_lookup_rule_for_both_commands(tmp_path):
    """Longest trailing part first (DIR/Dataset/test/x, DIR/test/x, DIR/x), then a unique file name."""
    root = tmp_path / "imgs"
    for rel in ("Dataset/test/a_1.png", "test/a_1.png", "b_1.png", "deep/er/c_1.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (2, 2)).save(root / rel)
    recs = [{"image_path": p, "class_label": "a"} for p in
            ("/Dataset/test/a_1.png", "/Dataset/test/b_1.png", "/Dataset/test/c_1.png", "/Dataset/test/d_1.png")]  # fmt: skip
    split = read_split_file(_split_file(tmp_path, recs, "test_data.json"))
    assert split.name == "test"
    found = find_images(split, root)
    assert found == [root / "Dataset/test/a_1.png", root / "b_1.png", root / "deep/er/c_1.png", None]
