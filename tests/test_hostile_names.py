"""File names that come from data, outside the release import (see test_release_split.py): class names
in dataset.json, split names in a previous manifest, description set names in a pipeline config. Each
goes through the one guard, ``fungalzsl.io.plain_name``, before it is joined onto a folder."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from fungalzsl.errors import FungalError
from fungalzsl.images import list_split
from fungalzsl.synth.layout import prepare_output


def _png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(path)


def test_dataset_json_class_names_cannot_read_folders_outside_the_dataset(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    _png(data / "train" / "spore" / "0.png")
    _png(outside / "private.png")
    (data / "dataset.json").write_text(json.dumps({"classes": ["spore", "../../outside"]}))
    with pytest.raises(FungalError, match=r"'\.\./\.\./outside' is not a plain name") as e:
        list_split(data, "train")
    assert "\n" not in str(e.value)
    with pytest.raises(FungalError, match="not a plain name"):  # class lists passed in are checked too
        list_split(data, "train", classes=["spore", "/etc"])


def test_overwrite_never_deletes_a_split_named_outside_out(tmp_path):
    out, victim = tmp_path / "out", tmp_path / "victim"
    _png(victim / "spore" / "000000.png")  # looks like a split folder we would have written
    out.mkdir()
    (out / "dataset.json").write_text(json.dumps({"settings_hash": "old", "splits": {"../victim": {}}}))
    prepare_output(out, "new", resume=False, overwrite=True, joining=False)
    assert (victim / "spore" / "000000.png").is_file()
    assert not (out / "dataset.json").exists()  # what we did write is still cleared


def test_overwrite_refuses_a_split_folder_that_is_a_symlink(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    _png(elsewhere / "spore" / "000000.png")
    out.mkdir()
    (out / "dataset.json").write_text(json.dumps({"settings_hash": "old", "splits": {"train": {}}}))
    (out / "train").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(FungalError, match="will not clear"):
        prepare_output(out, "new", resume=False, overwrite=True, joining=False)
    assert (elsewhere / "spore" / "000000.png").is_file()


def test_pipeline_set_name_cannot_put_the_descriptions_outside_out(tmp_path):
    from conftest import write_tiny_config
    from fungalzsl.pipeline import run_pipeline

    cfg = write_tiny_config(tmp_path / "c.yaml", describe={"set_name": "../../evil"})
    out = tmp_path / "p" / "out"
    with pytest.raises(FungalError, match=r"set_name '\.\./\.\./evil' is not a plain name"):
        run_pipeline(out, cfg, log=lambda _m: None)
    assert not (tmp_path / "p" / "evil.jsonl").exists()
    assert not (out / "data").exists()  # refused before any stage ran
