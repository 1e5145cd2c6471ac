"""Crash-safe writes, JSONL with torn lines, and config sections."""

import json

import pytest

from fungalzsl.config import load_section, resolve_config_path
from fungalzsl.errors import FungalError
from fungalzsl.io import append_jsonl, atomic_path, atomic_write_text, drop_torn_tail, read_jsonl, sha256_json


def test_atomic_write_leaves_the_old_file_when_the_writer_dies(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temp file left behind


def test_torn_last_jsonl_line_is_ignored_then_repaired_on_append(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b"')
    assert read_jsonl(f) == [{"a": 1}, {"a": 2}]
    append_jsonl(f, [{"a": 4}])
    assert read_jsonl(f) == [{"a": 1}, {"a": 2}, {"a": 4}]
    assert f.read_text().endswith('{"a": 4}\n')


def test_torn_tail_is_cut_whatever_it_looks_like_and_a_whole_last_record_is_kept(tmp_path):
    f = tmp_path / "d.jsonl"
    big = {"t": "x" * 100_000}  # longer than one read-back block
    for tail, cut in [("garbage\n\n", 9), ("\x00" * 70_000, 70_000), ("[1, 2]\n", 7), ("", 0)]:
        f.write_text(json.dumps(big) + "\n" + tail)
        assert drop_torn_tail(f) == cut, tail[:10]
        append_jsonl(f, [{"a": 4}])
        assert read_jsonl(f) == [big, {"a": 4}]
    f.write_text('{"a": 1}\n{"a": 2}')  # whole, only its newline missing: kept, newline added
    assert drop_torn_tail(f) == 0 and f.read_text() == '{"a": 1}\n{"a": 2}\n'
    f.write_text('{"a": ')  # one torn line and nothing else
    assert drop_torn_tail(f) == 6 and f.read_bytes() == b""
    assert drop_torn_tail(tmp_path / "missing.jsonl") == 0 and drop_torn_tail(tmp_path) == 0


def test_corrupt_middle_line_is_a_one_line_error(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(FungalError, match=r"d\.jsonl:2"):
        read_jsonl(f)


def test_hash_is_independent_of_key_order():
    assert sha256_json({"a": 1, "b": [1, 2]}) == sha256_json({"b": [1, 2], "a": 1})
    assert sha256_json({"a": 1}) != sha256_json({"a": 2})


def test_config_sections_and_presets(tmp_path):
    sectioned = tmp_path / "s.yaml"
    sectioned.write_text("train: {epochs: 3}\ngenerate: {size: 64}\n")
    plain = tmp_path / "p.yaml"
    plain.write_text("epochs: 5\n")
    assert load_section(sectioned, "train") == {"epochs": 3}
    assert load_section(sectioned, "evaluate") == {}
    assert load_section(plain, "train") == {"epochs": 5}
    assert resolve_config_path("paper").name == "paper.yaml"
    assert json.dumps(load_section("cpu-default", "train"))  # the shipped preset parses
    with pytest.raises(FungalError, match="not found"):
        resolve_config_path("no-such-preset")


def test_atomic_files_get_normal_permissions_not_mkstemps_0600(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        import importlib

        import fungalzsl.io as fio

        importlib.reload(fio)
        fio.atomic_write_text(tmp_path / "a.txt", "x")
        with fio.atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "a\\b", "/abs", ".hidden", "nul\x00", "tab\tname", "del\x7f"]
)
def test_plain_name_refuses_anything_that_is_not_one_path_component(name):
    from fungalzsl.io import name_problem, plain_name

    assert name_problem(name) is not None
    with pytest.raises(FungalError, match="is not a plain name") as e:
        plain_name(name, "class_label")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["spore", "early spore", "Hyphä-2", "x.png", "a..b"])
def test_plain_names_pass_unchanged(name):
    from fungalzsl.io import plain_name

    assert plain_name(name, "class_label") == name


def test_safe_child_follows_symlinks_before_deciding(tmp_path):
    from fungalzsl.io import is_inside, safe_child

    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    assert safe_child(root, "train", "spore", "x.png") == root / "train" / "spore" / "x.png"  # need not exist
    (root / "train").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(FungalError, match="leads outside --out"):
        safe_child(root, "train", "spore", "x.png", root_label="--out")
    inner = root / "inner"
    inner.mkdir()
    (root / "alias").symlink_to(inner, target_is_directory=True)
    assert is_inside(root / "alias" / "x.png", root)  # a link that stays inside is fine
    with pytest.raises(FungalError, match="not a plain name"):
        safe_child(root, "..", "x.png")
