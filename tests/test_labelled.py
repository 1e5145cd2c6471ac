"""read_labelled: both layouts, sources, order, and every bad input as a one-line FungalError."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from fungalzsl.errors import FungalError
from fungalzsl.labelled import LabelledImage, class_counts, read_labelled
from tiny_data import CLASSES, draw

REAL_DEV = Path(__file__).resolve().parents[1] / "data" / "real-dev"


def _image(path: Path, cls: str = "spore") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    draw(cls, 32, random.Random(len(str(path)))).save(path)
    return path


def _folders(root: Path, layout: dict[str, list[str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for cls, files in layout.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for f in files:
            _image(root / cls / f, cls if cls in CLASSES else "spore")
    return root


def _labels(root: Path, records: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def test_class_folders_in_class_order_with_sources(tmp_path):
    root = _folders(tmp_path / "shots", {"spore": ["b.png", "a.jpg"], "hyphae": ["x.png", "scopeA/y.png"]})
    items = read_labelled(root, ["spore", "hyphae", "mycelium"], require_every_class=False)
    assert [(i.path.relative_to(root).as_posix(), i.label, i.source) for i in items] == [
        ("spore/a.jpg", "spore", "folder"),
        ("spore/b.png", "spore", "folder"),
        ("hyphae/scopeA/y.png", "hyphae", "scopeA"),
        ("hyphae/x.png", "hyphae", "folder"),
    ]
    assert class_counts(items) == {"spore": 2, "hyphae": 2}
    # without a class list: sorted folder names
    assert [i.label for i in read_labelled(root)] == ["hyphae", "hyphae", "spore", "spore"]


def test_hidden_and_non_image_files_are_skipped(tmp_path):
    root = _folders(tmp_path / "s", {"spore": ["a.png"]})
    (root / "spore" / ".b.png").write_bytes(b"junk")
    (root / "spore" / "notes.txt").write_text("hi")
    (root / "README.md").write_text("about")
    assert [i.path.name for i in read_labelled(root)] == ["a.png"]


def test_labels_jsonl_layout(tmp_path):
    root = tmp_path / "flat"
    _image(root / "one.png")
    _image(root / "sub" / "two.png", "hyphae")
    _labels(
        root,
        [{"file": "sub/two.png", "label": "hyphae", "source": "lab"}, {"file": "one.png", "label": "spore"}],
    )
    assert read_labelled(root, ["spore", "hyphae"]) == [
        LabelledImage(root / "sub" / "two.png", "hyphae", "lab"),
        LabelledImage(root / "one.png", "spore", "labels"),
    ]


@pytest.mark.skipif(not REAL_DEV.is_dir(), reason="data/real-dev not in this checkout")
def test_reads_the_real_development_set():
    items = read_labelled(REAL_DEV, ["spore", "hyphae", "mycelium"])
    rows = [json.loads(x) for x in (REAL_DEV / "labels.jsonl").read_text().splitlines() if x.strip()]
    assert len(items) == len(rows)
    assert [(i.path.name, i.label, i.source) for i in items] == [
        (r["file"], r["label"], r["source"]) for r in rows
    ]


_REAL_DEV_FIELDS = {"file", "label", "source", "source_repo", "source_path", "commit", "licence", "copyright",
                    "how_labelled", "size"}  # fmt: skip


@pytest.mark.skipif(not REAL_DEV.is_dir(), reason="data/real-dev not in this checkout")
def test_real_development_set_keeps_its_documented_rules():
    """The README's promises: every image listed once with its provenance, true size, long side <= 512 px,
    at most 3 crops per source frame, <= 10 MB in all, and the counts table matches labels.jsonl."""
    from PIL import Image

    rows = [json.loads(x) for x in (REAL_DEV / "labels.jsonl").read_text().splitlines() if x.strip()]
    assert sorted(r["file"] for r in rows) == sorted(p.name for p in REAL_DEV.glob("*.png"))
    frames: dict[tuple[str, str], int] = {}
    for r in rows:
        assert set(r) >= _REAL_DEV_FIELDS, r["file"]
        assert all(str(r[k]).strip() for k in _REAL_DEV_FIELDS), r["file"]
        assert len(r["commit"]) == 40, r["file"]
        with Image.open(REAL_DEV / r["file"]) as im:
            assert list(im.size) == r["size"] and max(im.size) <= 512 and im.mode == "RGB", r["file"]
        if "crop_box" in r:
            left, top, right, bottom = r["crop_box"]
            assert left < right and top < bottom, r["file"]
        key = (r["source_repo"], r["source_path"])
        frames[key] = frames.get(key, 0) + 1
    assert max(frames.values()) <= 3
    assert sum(p.stat().st_size for p in REAL_DEV.iterdir()) <= 10 * 1024 * 1024
    counts = {c: sum(r["label"] == c for r in rows) for c in ("hyphae", "mycelium", "spore")}
    readme = (REAL_DEV / "README.md").read_text()
    for cls, n in counts.items():
        assert f"\n| {cls} | {n} |" in readme, (cls, n)
    assert f"| **total** | **{len(rows)}** |" in readme


def _fails(root: Path, match: str, classes=("spore", "hyphae")) -> None:
    with pytest.raises(FungalError, match=match) as e:
        read_labelled(root, list(classes) if classes else None)
    assert "\n" not in str(e.value)


def test_bad_folders(tmp_path):
    _fails(tmp_path / "nope", "does not exist")
    _fails(_folders(tmp_path / "a", {"spore": ["a.png"], "hyphae": []}), "hyphae holds no images")
    _fails(
        _folders(tmp_path / "b", {"spore": ["a.png"], "hyphae": ["b.png"], "yeast": ["c.png"]}),
        "'yeast' not among",
    )
    _fails(_folders(tmp_path / "c", {"spore": ["a.png"]}), "no images of class 'hyphae'")
    loose = _folders(tmp_path / "d", {"spore": ["a.png"], "hyphae": ["b.png"]})
    _image(loose / "stray.png")
    _fails(loose, "outside any class folder")
    _fails(_folders(tmp_path / "e", {}), "no labelled images")


def test_unreadable_images_are_named(tmp_path):
    root = _folders(tmp_path / "a", {"spore": ["a.png"], "hyphae": ["b.png"]})
    (root / "hyphae" / "c.png").write_text("not a png")
    _fails(root, r"c\.png: not a readable image")
    root = _folders(tmp_path / "b", {"spore": ["a.png"], "hyphae": ["b.png"]})
    data = (root / "hyphae" / "b.png").read_bytes()
    (root / "hyphae" / "b.png").write_bytes(data[: len(data) // 2])  # truncated
    _fails(root, r"b\.png: not a readable image")


def test_symlinks_out_of_the_folder_are_refused(tmp_path):
    outside = _image(tmp_path / "elsewhere" / "x.png")
    root = _folders(tmp_path / "a", {"spore": ["a.png"], "hyphae": ["b.png"]})
    (root / "hyphae" / "link.png").symlink_to(outside)
    _fails(root, "outside")
    (tmp_path / "b").mkdir()
    _image(tmp_path / "b" / "ok.png")
    (tmp_path / "b" / "link.png").symlink_to(outside)
    _labels(tmp_path / "b", [{"file": "ok.png", "label": "spore"}, {"file": "link.png", "label": "hyphae"}])
    _fails(tmp_path / "b", "is a link to .* outside")


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ({"file": "../elsewhere/x.png", "label": "spore"}, "not a path inside"),
        ({"file": "/etc/passwd", "label": "spore"}, "not a path inside"),
        ({"file": "ok.png"}, "no 'label'"),
        ({"label": "spore"}, "no 'file'"),
        ({"file": "ok.png", "label": "spore", "source": 3}, "'source' must be"),
        ({"file": "gone.png", "label": "spore"}, "is not in"),
        ({"file": "ok.png", "label": "yeast"}, "'yeast' not among the run's classes"),
    ],
)
def test_bad_label_records(tmp_path, record, match):
    _image(tmp_path / "elsewhere" / "x.png")
    root = tmp_path / "flat"
    _image(root / "ok.png")
    _image(root / "h.png", "hyphae")
    _labels(root, [{"file": "h.png", "label": "hyphae"}, record])
    _fails(root, match)


def test_duplicate_and_broken_lines(tmp_path):
    root = tmp_path / "flat"
    _image(root / "ok.png")
    _labels(root, [{"file": "ok.png", "label": "spore"}, {"file": "./ok.png", "label": "spore"}])
    _fails(root, "second time")  # the same file under another spelling
    _labels(root, [{"file": "ok.png", "label": "spore"}, {"file": "ok.png", "label": "hyphae"}])
    _fails(root, "second time")
    (root / "labels.jsonl").write_text('{"file": "ok.png", "label": "spore"}\n[1, 2]\n')
    _fails(root, "not a JSON object")
    (root / "labels.jsonl").write_text("{oops\n")
    _fails(root, "not valid JSON")
