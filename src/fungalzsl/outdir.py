"""Output folders written whole or not at all: build in a sibling temporary folder, then swap it in.

A command that writes several files into ``--out`` (``evaluate``, ``compare``) must never leave new
metrics beside an old report when it is killed. ``staged_dir(out, owned, what)`` yields an empty
sibling folder ``.NAME.staging-PID-RAND``; only when the block succeeds does that folder take the
place of ``out``, in one atomic ``renameat2(RENAME_EXCHANGE)`` on Linux, elsewhere in two renames with
the previous folder parked as ``.NAME.previous-PID-RAND`` in between. The previous folder is deleted
only after the swap. If the block fails or the process dies, ``out`` is untouched; the next run removes
leftover staging folders and puts back a parked previous folder whose swap did not finish.

An existing ``out`` is replaced only if everything in it is something the command itself writes
(``owned``: relative glob patterns, a trailing ``/`` for folders), so a ``--out`` that points at other
files is refused, never deleted."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fnmatch
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from fungalzsl.errors import fail

_STAGING = "staging"
_PARKED = "previous"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(real: Path, kind: str) -> list[Path]:
    """Sibling folders of ``kind`` left by processes that are gone (a running one keeps its own)."""
    prefix = f".{real.name}.{kind}-"
    found = []
    for p in real.parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        pid = p.name[len(prefix) :].split("-", 1)[0]
        if not (pid.isdigit() and _pid_alive(int(pid))):
            found.append(p)
    return found


def recover(real: Path) -> None:
    """Clean up after a run killed mid-way: staging folders are incomplete work and are removed; a
    parked previous folder is put back if the swap never finished, else removed."""
    for p in _leftovers(real, _STAGING):
        shutil.rmtree(p, ignore_errors=True)
    for p in _leftovers(real, _PARKED):
        if not real.exists():
            os.rename(p, real)
        else:
            shutil.rmtree(p, ignore_errors=True)


def _is_owned(rel: str, is_dir: bool, owned: Sequence[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    if not is_dir and name.startswith(".") and name.endswith(".tmp"):
        # A leftover of fungalzsl.io's atomic writers: ".<owned name>.<random>.tmp".
        rel = rel[: len(rel) - len(name)] + name[1:-4].rsplit(".", 1)[0]
    return any(fnmatch.fnmatchcase(rel + ("/" if is_dir else ""), pat) for pat in owned)


def foreign_entries(real: Path, owned: Sequence[str]) -> list[str]:
    """Paths inside ``real`` (relative, sorted) that the command does not write."""
    foreign = []
    for root, dirs, files in os.walk(real):
        base = Path(root).relative_to(real).as_posix()
        prefix = "" if base == "." else base + "/"
        for d in list(dirs):
            if not _is_owned(prefix + d, True, owned):
                foreign.append(prefix + d + "/")
                dirs.remove(d)  # no need to list what is inside a foreign folder
        foreign += [prefix + f for f in files if not _is_owned(prefix + f, False, owned)]
    return sorted(foreign)


def _check_target(out: Path, real: Path, owned: Sequence[str], what: str) -> None:
    if real.exists() and not real.is_dir():
        raise fail(f"cannot write to {out} (File exists)", "choose another --out directory")
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise fail(
            f"--out {out} is the current directory, which is replaced as a whole",
            "pass a folder below it, e.g. --out eval",
        )
    if not real.exists():
        return
    if os.path.ismount(real) or os.stat(real).st_dev != os.stat(real.parent).st_dev:
        raise fail(
            f"cannot replace {out}: it is a mount point and the new folder is built beside it",
            "pass a folder inside it, e.g. --out " + str(Path(out) / "eval"),
        )
    foreign = foreign_entries(real, owned)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise fail(
            f"{out} already holds files that are not {what}'s ({shown}); they would be replaced",
            "choose an empty or new --out directory, or move those files away",
        )


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where that is unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # old kernel or a filesystem without it: fall back to two renames
    raise OSError(err, os.strerror(err), str(a))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def swap_in(stage: Path, real: Path) -> None:
    """Put the finished ``stage`` folder at ``real``; afterwards ``stage`` holds the previous folder
    (or nothing), for the caller to delete."""
    if not real.exists():
        os.rename(stage, real)
    elif not _exchange(stage, real):
        parked = real.parent / stage.name.replace(f".{_STAGING}-", f".{_PARKED}-", 1)
        os.rename(real, parked)
        os.rename(stage, real)
        os.rename(parked, stage)
    _fsync_dir(real.parent)


@contextlib.contextmanager
def staged_dir(out: str | os.PathLike[str], owned: Sequence[str], what: str) -> Iterator[Path]:
    """Yield an empty folder to write ``out``'s new contents into; it replaces ``out`` when the block
    ends without an exception. ``owned`` lists what the command writes (``"metrics.json"``,
    ``"figures/"``, ``"figures/*.png"``); ``what`` names it in the refusal (``"an evaluation"``)."""
    out = Path(out)
    real = Path(os.path.realpath(out))  # swap the folder a symlink points at, not the link
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        recover(real)
        _check_target(out, real, owned, what)
        stage = Path(tempfile.mkdtemp(prefix=f".{real.name}.{_STAGING}-{os.getpid()}-", dir=real.parent))
    except OSError as e:
        raise fail(f"cannot write to {out} ({e.strerror or e})", "choose another --out directory") from None
    try:
        # mkdtemp makes a private folder; outputs get the mode the old folder had, or the user's default.
        os.chmod(stage, (real.stat().st_mode & 0o7777) if real.is_dir() else 0o777 & ~_umask())
        yield stage
        swap_in(stage, real)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
