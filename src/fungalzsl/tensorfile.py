"""Reading and writing ``.safetensors`` files: same bytes for the same tensors, normal file permissions,
and a damaged file named in a one-line error. torch and safetensors are imported only when called.

Why not ``safetensors.torch.save_file`` directly: it writes the ``__metadata__`` mapping in hash order,
so two saves of the same weights differ in their header bytes, and it creates files readable by their
owner only (0600) where every other output gets the umask's normal permissions (0644 typically)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from fungalzsl.errors import fail
from fungalzsl.io import atomic_path, regular_file

if TYPE_CHECKING:
    import torch


def _sorted_header(data: bytes) -> tuple[bytes, int]:
    """The file's JSON header with ``__metadata__`` keys sorted, padded to the original length, and that length.

    The layout is ``u64 little-endian n | n bytes of JSON (space padded) | tensor data``; reordering keys
    keeps the JSON's length, so the data offsets stay valid."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(bytes(data[8 : 8 + n]))
    meta = header.get("__metadata__")
    if meta:
        header = {
            "__metadata__": dict(sorted(meta.items())),
            **{k: v for k, v in header.items() if k != "__metadata__"},
        }
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) > n:  # another JSON spelling than serde's; keep the library's bytes
        return bytes(data[8 : 8 + n]), n
    return text.ljust(n, b" "), n


def save_tensors(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` (contiguous, CPU) to ``path`` atomically; the same inputs give the same bytes."""
    from safetensors.torch import save

    data = memoryview(save(tensors, metadata=metadata))
    header, n = _sorted_header(data)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data[:8])
        f.write(header)
        f.write(data[8 + n :])
        f.flush()
        os.fsync(f.fileno())


def load_tensors(path: str | os.PathLike[str], what: str = "tensor file") -> dict[str, torch.Tensor]:
    """All tensors of a ``.safetensors`` file; a missing, non-regular or damaged file is a one-line error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = regular_file(Path(path), what)
    try:
        return load_file(str(path))
    except SafetensorError as e:
        raise fail(
            f"{what} {path} is damaged or not a safetensors file ({e})",
            "restore it, or rerun the step that wrote it (train)",
        ) from None


def read_metadata(path: str | os.PathLike[str], what: str = "tensor file") -> dict[str, str]:
    """The ``__metadata__`` strings of a ``.safetensors`` file (empty when it has none)."""
    from safetensors import SafetensorError, safe_open

    path = regular_file(Path(path), what)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except SafetensorError as e:
        raise fail(
            f"{what} {path} is damaged or not a safetensors file ({e})", "rerun the step that wrote it"
        ) from None
