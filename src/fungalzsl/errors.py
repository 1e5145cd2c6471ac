"""User-facing errors: one line that names the problem and the fix; the CLI prints it without a traceback.

:func:`explain` also gives one line for exceptions that users cause without any code of ours noticing first
(a file that is not UTF-8, a full disk, a damaged ``.safetensors``, a refused pickle, no CUDA GPU). Anything
it does not know is a bug and keeps its traceback."""

from __future__ import annotations

import errno
import json
import os
import sys


class FungalError(Exception):
    """An error caused by the user's input or environment, not by a bug.

    The message is one line: what is wrong, then what to do about it.
    """

    exit_code = 2


def fail(problem: str, fix: str | None = None) -> FungalError:
    """Build a FungalError from a problem and its fix (``raise fail(...)``)."""
    return FungalError(f"{problem}. {fix}" if fix else problem)


def debug_enabled() -> bool:
    """``FUNGALZSL_DEBUG=1`` shows the traceback of known errors too."""
    return os.environ.get("FUNGALZSL_DEBUG", "") not in ("", "0")


# errno -> what to do; the problem itself is the OS's own wording plus the file name.
_OS_FIXES = {
    errno.ENOSPC: "free some disk space or choose another output directory; finished work is kept",
    errno.EDQUOT: "free some space within your quota or choose another output directory",
    errno.EROFS: "the file system is read-only: choose another output directory",
    errno.EACCES: "check the permissions, or choose another path",
    errno.EPERM: "check the permissions, or choose another path",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a directory: check the path",
    errno.EISDIR: "the path is a directory: give a file name",
    errno.EEXIST: "remove it or choose another path",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.EMFILE: "raise the open-file limit (ulimit -n)",
    errno.ENXIO: "give a regular file",
    errno.EIO: "the disk reported an I/O error: check the device",
}


def _first_line(e: BaseException, limit: int = 200) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:limit]


def _os_error(e: OSError) -> str | None:
    fix = _OS_FIXES.get(e.errno or -1)
    if fix is None:
        return None
    where = f": {e.filename}" if e.filename is not None else ""
    if e.filename2 is not None:
        where += f" -> {e.filename2}"
    return f"{e.strerror or os.strerror(e.errno or 0)}{where}. {fix}"


def _by_name(e: BaseException) -> str | None:
    """Errors of optional libraries, matched by class name so that this module imports none of them."""
    kind, mod, msg = type(e).__name__, type(e).__module__ or "", _first_line(e)
    if kind == "SafetensorError":
        return f"a .safetensors file is damaged or not safetensors ({msg}). Restore it, or retrain the run"
    if mod.startswith("onnxruntime"):
        return f"onnxruntime cannot use the ONNX model ({msg}). Re-export it: fungalzsl export RUN --out DIR"
    if mod.startswith("pyarrow") and kind in ("ArrowInvalid", "ArrowIOError", "ArrowException"):
        return f"a Parquet file is damaged ({msg}). Regenerate it, or delete it to use the JSONL beside it"
    if mod.startswith("yaml") and kind.endswith("Error"):
        return f"a YAML file is not valid YAML ({msg}). Fix the file"
    if kind == "OutOfMemoryError":
        return "the GPU ran out of memory. Lower --batch-size, or use --device cpu"
    return None


_CUDA_HINTS = (
    "Torch not compiled with CUDA enabled",
    "Found no NVIDIA driver",
    "No CUDA GPUs are available",
    "invalid device ordinal",
    "CUDA driver initialization failed",
)
_BAD_CHECKPOINT_HINTS = ("PytorchStreamReader failed", "failed finding central directory", "invalid load key")


def explain(e: BaseException) -> str | None:
    """One ``problem. fix`` line for an exception a user's input or machine causes; None for a bug."""
    if isinstance(e, FungalError):
        return str(e)
    if isinstance(e, UnicodeDecodeError):
        return (
            f"a file is not UTF-8 text ({e.reason} at byte {e.start}). "
            "Check that the path names the right file; text files (YAML, JSON, JSONL, CSV) must be UTF-8"
        )
    if isinstance(e, json.JSONDecodeError):
        return f"a file is not valid JSON ({e.msg}, line {e.lineno} column {e.colno}). Fix or replace it"
    pickle = sys.modules.get("pickle")
    if pickle is not None and isinstance(e, pickle.UnpicklingError):
        return (
            f"refused to load a pickled checkpoint ({_first_line(e, 120)}): only plain tensors are loaded, "
            "never code. Use a .safetensors file or a checkpoint you trust, saved as a plain state dict"
        )
    text = str(e)
    if isinstance(e, (RuntimeError, AssertionError)) and any(h in text for h in _CUDA_HINTS):
        return f"CUDA is not available here ({_first_line(e, 120)}). Use --device cpu, or run on a machine with a GPU"
    if isinstance(e, RuntimeError) and ("device string" in text or "Expected one of cpu" in text):
        return f"unknown torch device ({_first_line(e, 160)}). Use e.g. --device cpu, cuda or cuda:0"
    if isinstance(e, RuntimeError) and any(h in text for h in _BAD_CHECKPOINT_HINTS):
        return f"a checkpoint file is damaged or not a torch checkpoint ({_first_line(e, 120)}). Restore it"
    if isinstance(e, MemoryError):
        return "ran out of memory. Lower --batch-size or the dataset size"
    if isinstance(e, OSError):
        return _os_error(e)
    return _by_name(e)
