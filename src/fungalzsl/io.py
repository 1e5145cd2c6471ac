"""Atomic, crash-safe file writing and JSON Lines helpers shared by every stage.

File names that are not UTF-8 (``b"\\xff.png"``) reach Python as surrogate escapes (``os.fsdecode``:
byte XX becomes U+DCXX). Text outputs (CSV, Markdown, HTML) write them back as the original bytes
(``errors="surrogateescape"``); JSON and JSON Lines stay valid UTF-8 and write them as the escape
``\\udcXX``, which ``json.loads`` turns back into the same string and ``os.fsencode`` into the same bytes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fungalzsl.errors import fail


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; outputs (datasets, checkpoints, reports) should
# get the same permissions as any file the user creates, so temp files are widened to 0666 & ~umask.
_FILE_MODE = 0o666 & ~_umask()


def _tmp_prefix(path: Path) -> str:
    # The temporary name is kept UTF-8 (the final name need not be), for libraries that need UTF-8 names.
    name = path.name if _is_utf8(Path(path.name)) else path.name.encode("utf-8", "backslashreplace").decode()
    return f".{name}."


def _tmp_beside(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OS error while writing ``path`` names ``path``: a write or fsync error names no file, and one
    on the temporary file names ``.NAME.XXXX.tmp``; either way the user needs to know which output."""
    try:
        yield
    except OSError as e:
        name = None if e.filename is None else Path(os.fsdecode(e.filename))
        ours = name is None or (name.parent == path.parent and name.name.startswith(_tmp_prefix(path)))
        if e.errno is None or not ours:
            raise
        raise type(e)(e.errno, e.strerror or os.strerror(e.errno), os.fspath(path)) from e


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one (a FIFO,
    device or folder at ``path`` is refused, not replaced)."""
    path = output_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _naming(path):
        tmp = _tmp_beside(path)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            fsync_dir(path.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the names in directory ``path`` durable: after a rename into it, the file's data may be on
    disk (fsynced) while its new name is not, and a power loss then leaves the old name or none.
    Best effort: platforms and file systems that cannot fsync a directory are skipped."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_durable(files: Iterable[Path]) -> None:
    """Put the data and the names of ``files`` (written, then renamed into place) on disk, before
    anything records them as done. On Linux one ``syncfs(2)`` per file system holding them: one
    journal commit for a batch of files, where an fsync each cost ~6 ms per image. Elsewhere, or if
    it fails: an fsync of each file and then of each folder."""
    files = list(files)
    folders = sorted({f.parent for f in files})
    devices: dict[int, Path] = {}
    for d in folders:
        with contextlib.suppress(OSError):
            devices.setdefault(os.stat(d).st_dev, d)
    if devices and all(_syncfs(d) for d in devices.values()):
        return
    for f in files:
        with contextlib.suppress(OSError):
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for d in folders:
        fsync_dir(d)


def _syncfs(folder: Path) -> bool:
    """``syncfs(2)`` of the file system holding ``folder``; False where there is none or it failed."""
    import ctypes

    try:
        call = ctypes.CDLL(None, use_errno=True).syncfs
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (AttributeError, OSError):
        return False
    try:
        return call(fd) == 0
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """UTF-8; surrogate escapes (non-UTF-8 file names) are written back as their original bytes."""
    atomic_write_bytes(path, text.encode("utf-8", errors="surrogateescape"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=str) + "\n")


_SURROGATE = re.compile("[\ud800-\udfff]")


def json_line(obj: Any) -> str:
    """One JSON object as a line of valid UTF-8: non-ASCII kept, lone surrogates escaped as ``\\udcXX``."""
    text = json.dumps(obj, ensure_ascii=False, default=str)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def regular_file(path: str | os.PathLike[str], what: str = "file") -> Path:
    """``path`` if it is a regular file (or a link to one); a one-line error otherwise.

    Checked before opening: opening a FIFO for reading blocks until a writer appears, i.e. forever."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise fail(f"{what} {path} does not exist", "check the path") from None
    except OSError as e:
        raise fail(f"cannot read {what} {path} ({e.strerror or e})", "check the path") from None
    if not stat.S_ISREG(mode):
        raise fail(f"{what} {path} is {_kind(mode)}", "give a regular file")
    return path


def _kind(mode: int) -> str:
    return "a directory" if stat.S_ISDIR(mode) else "not a regular file"


def output_file(path: str | os.PathLike[str], what: str = "output file") -> Path:
    """``path`` if it is free or a regular file (to be replaced or appended to); a one-line error if it
    is a directory, a FIFO or a device: appending to a FIFO blocks until a reader appears, i.e. forever."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return path
    except OSError as e:
        raise fail(f"cannot use {what} {path} ({e.strerror or e})", "check the path") from None
    if not stat.S_ISREG(mode):
        raise fail(f"{what} {path} is {_kind(mode)}", "give the name of a regular file (or of a new one)")
    return path


def read_text_file(path: str | os.PathLike[str], what: str = "file", fix: str | None = None) -> str:
    """The text of a UTF-8 file; a FIFO, a directory or bytes that are not UTF-8 are one-line errors
    (ending with ``fix`` where the caller knows a better one than checking the path)."""
    path = regular_file(path, what)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise fail(
            f"{what} {path} is not UTF-8 text (byte {e.start})",
            fix or "check that the path names the right file",
        ) from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    For writers that want a file name (safetensors, pyarrow, matplotlib)."""
    path = output_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _naming(path):
        tmp = _tmp_beside(path)
        try:
            with _utf8_name(tmp) as name:
                yield name
            os.replace(tmp, path)
            fsync_dir(path.parent)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()


def _is_utf8(path: Path) -> bool:
    try:
        os.fsdecode(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextlib.contextmanager
def _utf8_name(tmp: Path) -> Iterator[Path]:
    """``tmp``, or where its directory's name is not UTF-8, the same file reached through an open
    directory descriptor (``/proc/self/fd/N/NAME``): pyarrow and others encode names as strict UTF-8."""
    if _is_utf8(tmp) or not _is_utf8(Path(tmp.name)) or not os.path.isdir("/proc/self/fd"):
        yield tmp
        return
    fd = os.open(tmp.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield Path(f"/proc/self/fd/{fd}/{tmp.name}")
    finally:
        os.close(fd)


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON Lines file; a torn last line (a killed writer) is ignored, other bad lines are errors."""
    path = Path(path)
    if not path.exists():
        raise fail(f"{path} does not exist", "check the path")
    lines = read_text_file(path, "JSON Lines file").splitlines()
    out: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break  # an interrupted append; the record will be redone
            raise fail(f"{path}:{i + 1} is not valid JSON ({e.msg})", "fix or delete that line") from None
        if not isinstance(rec, dict):
            raise fail(
                f"{path}:{i + 1} is a JSON {type(rec).__name__}, not an object",
                'each line must be one object, e.g. {"class": "spore", "text": "..."}',
            )
        out.append(rec)
    return out


def drop_torn_tail(path: str | os.PathLike[str]) -> int:
    """Cut the last line of a JSON Lines file when it is not a whole JSON object — what a writer killed
    mid-append (or a power loss: a tail of NUL bytes) leaves; returns the bytes cut (0: nothing torn).

    Readers skip such a line (``read_jsonl``), but an append after it would leave it mid-file, where it
    is an error. A whole last record that lacks only its newline gets one. Reads the tail only."""
    path = Path(path)
    if not path.is_file():  # never opens a FIFO: that would block
        return 0
    try:
        with open(path, "r+b") as f:
            return _cut_torn_tail(f)
    except OSError:
        return 0  # unreadable or read-only: left to the reader's or the writer's own error


def _cut_torn_tail(f: Any) -> int:
    size = f.seek(0, os.SEEK_END)
    end, tail = size, b""
    while end > 0:  # read back to the newline before the last non-blank line
        step = min(end, 1 << 16)
        f.seek(end - step)
        tail = f.read(step) + tail
        end -= step
        if b"\n" in tail.rstrip(b" \t\r\n"):
            break
    body = tail.rstrip(b" \t\r\n")
    start = body.rfind(b"\n") + 1
    try:
        whole = not body or isinstance(json.loads(body[start:]), dict)
    except ValueError:  # not JSON, or not UTF-8 (UnicodeDecodeError is a ValueError)
        whole = False
    if whole:
        if body and not tail.endswith(b"\n"):
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
        return 0
    keep = end + start
    f.truncate(keep)
    f.flush()
    os.fsync(f.fileno())
    return size - keep


def append_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> None:
    """Append records, one JSON object a line, flushed and fsynced so finished work survives a crash."""
    path = output_file(path, "JSON Lines file")
    path.parent.mkdir(parents=True, exist_ok=True)
    drop_torn_tail(path)  # a torn final line from an earlier crash must not end up mid-file
    with _naming(path), open(path, "a", encoding="utf-8") as f:
        for rec in records:
            f.write(json_line(rec) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json_line(r) + "\n" for r in records))


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Stable hash of a JSON-able object (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` if needed and check that we can write into it; raise a one-line error if not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = _tmp_beside(path / "probe")
        probe.unlink()
    except OSError as e:
        raise fail(f"cannot write to {path} ({e.strerror or e})", "choose another --out directory") from None
    return path


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be used as one file or folder name, or None if it can.

    A plain name is one path component: not empty, not ``.`` or ``..``, no ``/`` or ``\\``, no NUL or
    other control character, and no leading ``.`` (hidden names are skipped by every reader here, so
    such a class or image would silently vanish)."""
    if not isinstance(name, str) or not name:
        return "it is empty"
    if name in (".", ".."):
        return f"'{name}' is a folder reference"
    if "/" in name or "\\" in name:
        return "it contains a path separator"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "it contains a control character"
    if name.startswith("."):
        return "it starts with '.' (a hidden name)"
    return None


def plain_name(name: object, what: str, fix: str = "use a single file or folder name") -> str:
    """``name`` if it is a plain name (see :func:`name_problem`), else a one-line error naming ``what``."""
    problem = name_problem(name)
    if problem is not None:
        raise fail(f"{what} {name!r} is not a plain name ({problem})", fix)
    return name  # type: ignore[return-value]


def is_inside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """Whether ``path`` stays under ``root`` once both have their symlinks and ``..`` resolved."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def safe_child(
    root: str | os.PathLike[str], *names: str, what: str = "path", root_label: str = "the output folder"
) -> Path:
    """``root/names[0]/names[1]/...`` after checking that every name is plain and that the result,
    symlinks resolved, is still under ``root``: the one guard for file names that come from data."""
    for n in names:
        plain_name(n, what)
    path = Path(root).joinpath(*names)
    if not is_inside(path, root):
        raise fail(
            f"{what} {'/'.join(names)!r} leads outside {root_label} {root} (through a symlink to "
            f"{path.resolve()})",
            "remove the symlink or choose another folder",
        )
    return path
