"""Reading image datasets: our generated layout, any ImageFolder tree, single images.

Every image goes through :func:`load_image`, which turns the odd formats labs produce (16-bit,
grayscale, palette, RGBA, CMYK) into RGB and refuses decompression bombs (too many pixels, a side too
long, or too elongated a shape) from the header, with a clear message."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from fungalzsl.errors import fail
from fungalzsl.io import plain_name

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
# 64 megapixels: a 8000x8000 microscope tile still opens, a decompression bomb does not.
MAX_IMAGE_PIXELS = 64_000_000
# The pixel count alone does not bound memory: every model resizes the *shorter* side to its input
# size S (224-518 px), which makes a W x H image (W >= H) S x S*W/H pixels, so a 100-byte 20000x1 PNG
# became a 224 x 4,480,000 image (4.7 GB peak RSS). Bounding the side and the aspect ratio bounds that
# to S^2 * MAX_ASPECT_RATIO pixels (224 px: 1 M; 518 px: 5.4 M).
MAX_IMAGE_SIDE = 32_768
MAX_ASPECT_RATIO = 20
# JPEGs decode at the 1/2, 1/4 or 1/8 DCT scale (Pillow's draft) that keeps the shorter side at least
# this long: far above any model input, so predictions do not change, but a 64 MP JPEG costs 1/16
# of the memory and time to decode.
DECODE_MIN_SIDE = 1024
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageReadError(ValueError):
    """One image could not be read; the message says why (callers report it and go on)."""


def size_problem(width: int, height: int) -> str | None:
    """Why a ``width`` x ``height`` image is refused before decoding, or None if it is not."""
    if width * height > MAX_IMAGE_PIXELS:
        return f"image is larger than {MAX_IMAGE_PIXELS} pixels (refused)"
    shape = f"image is {width}x{height} pixels"
    if max(width, height) > MAX_IMAGE_SIDE:
        return f"{shape}, over the {MAX_IMAGE_SIDE}-pixel side limit (refused)"
    if min(width, height) < 1 or max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        return f"{shape}, more elongated than {MAX_ASPECT_RATIO}:1 (refused)"
    return None


def load_image(source: str | Path | BinaryIO, name: str | None = None) -> Image.Image:
    """Open a file path or binary stream as an RGB PIL image, or raise :class:`ImageReadError` with a
    one-line reason that starts with ``name`` (default: the path).

    The size limits (:func:`size_problem`) are checked on the header, before any pixel is decoded."""
    label = name or str(source if isinstance(source, (str, Path)) else "<upload>")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its limit; we refuse anything over the limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                problem = size_problem(im.width, im.height)
                if problem is not None:
                    raise ImageReadError(f"{label}: {problem}")
                if im.format == "JPEG" and min(im.size) >= 2 * DECODE_MIN_SIDE:
                    im.draft(None, (DECODE_MIN_SIDE, DECODE_MIN_SIDE))
                im.load()
                return to_rgb(im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageReadError(f"{label}: image is larger than {MAX_IMAGE_PIXELS} pixels (refused)") from None
    except FileNotFoundError:
        raise ImageReadError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{label}: is a directory") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{label}: not a readable image (unknown or unsupported format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageReadError(f"{label}: not a readable image ({reason})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (alpha composited on black, 16-bit scaled, CMYK converted)."""
    if im.mode == "RGB":
        return im.copy()
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


@dataclass
class ImageSet:
    """Paths and integer labels of one split, with the class names that the labels index, and where
    known the source of each image (a repository, lab or microscope; :mod:`fungalzsl.labelled`)."""

    paths: list[Path]
    labels: list[int]
    classes: list[str]
    sources: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.paths)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def read_classes(root: Path) -> list[str] | None:
    """Class order recorded by ``fungalzsl generate`` (dataset.json), if present."""
    manifest = root / "dataset.json"
    if manifest.is_file():
        try:
            classes = json.loads(manifest.read_text())["classes"]
            return [c if isinstance(c, str) else c["name"] for c in classes]
        except (ValueError, KeyError, TypeError):
            return None
    return None


def list_split(
    root: str | Path, split: str | None = "train", classes: Sequence[str] | None = None
) -> ImageSet:
    """List the images of ``split`` in an ImageFolder tree ``root/split/class/*``.

    ``split=None`` reads ``root/class/*`` directly (a lab's own folder of labelled images). Class order
    comes from ``classes``, else from the dataset manifest, else sorted folder names."""
    root = Path(root)
    if not root.is_dir():
        raise fail(
            f"data directory {root} does not exist", "run 'fungalzsl generate --out DIR' or check the path"
        )
    base = root / split if split else root
    if not base.is_dir():
        have = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise fail(
            f"{root} has no '{split}' split (found: {', '.join(have) or 'nothing'})",
            "pass --split with one of those, or point --data at a generated dataset",
        )
    folders = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    order = list(classes) if classes else (read_classes(root) or folders)
    for name in order:  # from dataset.json or a description set, joined onto base: one folder name each
        plain_name(
            name, "class", "class names name folders; fix the class list in dataset.json or the descriptions"
        )
    unknown = [f for f in folders if f not in order]
    if unknown:
        raise fail(
            f"{base} has class folders not in the class list: {', '.join(unknown)}",
            "remove them or add the classes to the description set",
        )
    paths: list[Path] = []
    labels: list[int] = []
    for idx, name in enumerate(order):
        folder = base / name
        if not folder.is_dir():
            continue
        before = len(paths)
        for p in sorted(folder.rglob("*")):
            if p.is_file() and is_image_file(p):
                paths.append(p)
                labels.append(idx)
        if len(paths) == before:
            # An emptied folder silently drops a class from training (or from the scores): say so.
            print(f"warning: {folder} holds no images; class '{name}' has no {split or 'data'} examples",
                  file=sys.stderr)  # fmt: skip
    if not paths:
        raise fail(f"no images found under {base}", "expected ImageFolder layout SPLIT/CLASS/*.png")
    return ImageSet(paths=paths, labels=labels, classes=order)


def expand_inputs(items: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """Expand files, folders (recursively) and glob patterns into image paths.

    Returns (paths, problems): a problem is a one-line message for an input that matched nothing."""
    import glob

    out: list[Path] = []
    problems: list[str] = []
    for item in items:
        s = str(item)
        p = Path(s)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and is_image_file(q))
            if not found:
                problems.append(f"{p}: folder has no images")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        elif p.exists():  # a FIFO or device: opening it would block until a writer comes, i.e. forever
            problems.append(f"{p}: not a regular file")
        elif any(ch in s for ch in "*?["):
            found = sorted(Path(q) for q in glob.glob(s, recursive=True) if Path(q).is_file())
            if not found:
                problems.append(f"{s}: pattern matched no files")
            out.extend(found)
        else:
            problems.append(f"{p}: no such file or folder")
    seen: set[Path] = set()
    unique = [q for q in out if not (q in seen or seen.add(q))]
    return unique, problems
