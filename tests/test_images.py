"""Image loading and dataset listing: every odd format becomes RGB, every bad file a one-line reason."""

import io

import numpy as np
import pytest
from PIL import Image

from fungalzsl.errors import FungalError
from fungalzsl.images import MAX_IMAGE_PIXELS, ImageReadError, expand_inputs, list_split, load_image


def _save(tmp_path, name, im, **kw):
    p = tmp_path / name
    im.save(p, **kw)
    return p


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "LA", "1"])
def test_every_mode_becomes_8bit_rgb(tmp_path, mode):
    base = Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 10, 3), dtype=np.uint8))
    if mode == "I;16":
        im = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
        assert im.mode.startswith("I;16")
    else:
        im = base.convert(mode)
    p = _save(tmp_path, "x.jpg" if mode == "CMYK" else "x.png", im)
    out = load_image(p)
    assert out.mode == "RGB" and out.size == (10, 12)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    im = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert np.asarray(load_image(_save(tmp_path, "w.png", im))).min() == 255


def test_alpha_is_composited_on_black(tmp_path):
    im = Image.new("RGBA", (2, 2), (255, 255, 255, 0))
    assert np.asarray(load_image(_save(tmp_path, "a.png", im))).max() == 0


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"plain text", "unknown or unsupported format"),
        (None, "no such file"),
        ("trunc", "not a readable image"),
    ],
)
def test_bad_files_raise_one_line_reasons(tmp_path, content, why):
    p = tmp_path / "bad.png"
    if content == "trunc":
        Image.effect_noise((64, 64), 50).save(p)
        p.write_bytes(p.read_bytes()[:200])
    elif content is not None:
        p.write_bytes(content)
    with pytest.raises(ImageReadError, match=why) as e:
        load_image(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_decompression_bomb_refused_from_file_and_stream(tmp_path):
    side = int(MAX_IMAGE_PIXELS**0.5) + 100
    p = _save(tmp_path, "bomb.png", Image.new("1", (side, side)))
    with pytest.raises(ImageReadError, match="larger than"):
        load_image(p)
    with pytest.raises(ImageReadError, match=r"upload\.png: image is larger than"):
        load_image(io.BytesIO(p.read_bytes()), name="upload.png")


def test_expand_inputs_files_folders_globs_and_problems(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    a = _save(tmp_path / "d", "a.png", Image.new("RGB", (2, 2)))
    b = _save(tmp_path / "d" / "sub", "b.jpg", Image.new("RGB", (2, 2)))
    (tmp_path / "d" / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    paths, problems = expand_inputs(
        [
            tmp_path / "d",
            str(tmp_path / "d" / "*.png"),
            tmp_path / "empty",
            tmp_path / "missing.png",
            str(tmp_path / "*.tif"),
        ]
    )
    assert paths == [a, b]  # de-duplicated, text file ignored
    assert len(problems) == 3 and any("no images" in p for p in problems)


def test_list_split_orders_classes_by_manifest_and_rejects_strangers(tmp_path):
    for cls in ("mycelium", "spore"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        _save(tmp_path / "train" / cls, "0.png", Image.new("RGB", (2, 2)))
    (tmp_path / "dataset.json").write_text('{"classes": ["spore", "hyphae", "mycelium"]}')
    s = list_split(tmp_path, "train")
    assert s.classes == ["spore", "hyphae", "mycelium"] and sorted(s.labels) == [0, 2]
    with pytest.raises(FungalError, match="no 'val' split"):
        list_split(tmp_path, "val")
    (tmp_path / "train" / "alien").mkdir()
    with pytest.raises(FungalError, match="alien"):
        list_split(tmp_path, "train")


def _strip(width, height):
    """A tiny crafted PNG: ~100 bytes on disk, but resizing it to a 224 px shorter side made a
    224 x (224 * width) image (20000x1: 4.7 GB peak RSS, 40000x1: 9.4 GB, before the side/aspect bounds)."""
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, "PNG", optimize=True)
    assert len(buf.getvalue()) < 200
    return buf.getvalue()


@pytest.mark.parametrize(("size", "why"), [((20000, 1), "more elongated than"), ((40000, 1), "side limit"),
                                           ((1, 20000), "more elongated than")])  # fmt: skip
def test_very_wide_or_tall_images_are_refused_from_the_header(tmp_path, monkeypatch, size, why):
    from PIL import ImageFile

    data = _strip(*size)
    p = tmp_path / "strip.png"
    p.write_bytes(data)
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: decoded.append(im) or real_load(im))
    with pytest.raises(ImageReadError, match=why) as e:
        load_image(p)
    assert str(e.value).startswith(f"{p}: image is {size[0]}x{size[1]} pixels") and "\n" not in str(e.value)
    with pytest.raises(ImageReadError, match=rf"upload\.png: image is .*{why}"):
        load_image(io.BytesIO(data), name="upload.png")
    assert decoded == []  # refused from the header: no pixel was decoded


def test_big_but_legal_images_still_load(tmp_path):
    from fungalzsl.images import DECODE_MIN_SIDE, MAX_ASPECT_RATIO

    # a long stitched strip right at the aspect bound, at full size (PNG has no reduced decode)
    wide = _save(tmp_path, "wide.png", Image.new("RGB", (MAX_ASPECT_RATIO * 300, 300), (9, 99, 199)))
    assert load_image(wide).size == (MAX_ASPECT_RATIO * 300, 300)
    # a 24 MP JPEG decodes at the DCT scale (here 1/2) that keeps the shorter side >= DECODE_MIN_SIDE
    rng = np.random.default_rng(0)
    tile = Image.fromarray(rng.integers(0, 255, (750, 1000, 3), dtype=np.uint8)).resize((6000, 4000))
    jpg = _save(tmp_path, "big.jpg", tile, quality=80)
    im = load_image(jpg)
    assert im.mode == "RGB" and im.size == (3000, 2000) and min(im.size) >= DECODE_MIN_SIDE
    # at a model's input size the picture is the same as from a full decode
    full = Image.open(jpg).convert("RGB")
    a, b = (np.asarray(x.resize((336, 224), Image.Resampling.BICUBIC), dtype=np.int16) for x in (im, full))
    assert np.abs(a - b).mean() < 0.5
    small = _save(tmp_path, "small.jpg", tile.resize((1600, 1200)))
    assert load_image(small).size == (1600, 1200)  # under 2 x DECODE_MIN_SIDE: decoded in full
