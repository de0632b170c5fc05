"""Safe output files: a temp file in the same folder, fsync, rename over the target, fsync the folder.

What a user expects of an output file, and what this module guarantees:
- it appears whole or not at all (temp file + rename), and survives a power loss once reported written
  (the file and then its folder are fsynced);
- it gets the permissions a plain `open()` would give under the user's umask (0o666 & ~umask), and a
  rewrite keeps the existing file's mode: `mkstemp` alone would leave every output at 0600;
- a target that exists but is not a regular file (a FIFO, /dev/stdout, a terminal) is written through,
  never renamed over; a symlink is followed, so the file it points to is replaced and the link stays;
- `-` means standard output;
- a write that fails for want of space, quota or permission (ENOSPC, EDQUOT, EROFS, ...) is an OutputError naming the
  file and the errno (the CLI's one line and exit 2), and leaves no temp file behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sdeval.core.errors import OutputError, SdevalError

STDOUT = "-"
#: Errnos that say an output cannot be written where it was asked for: the user's to fix, not a bug.
OUTPUT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EROFS", "EFBIG", "EIO", "EACCES", "EPERM", "ENOENT", "ENOTDIR", "EISDIR",
                 "ENAMETOOLONG")
    if hasattr(errno, name)
)  # fmt: skip


@contextlib.contextmanager
def output_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an OSError of writing `path` (one of OUTPUT_ERRNOS) into an OutputError naming it and the errno."""
    try:
        yield
    except OutputError:
        raise
    except OSError as err:
        if err.errno not in OUTPUT_ERRNOS:
            raise
        raise OutputError("standard output" if str(path) == STDOUT else path, err) from err


def _read_umask() -> int:
    # Read once, at import, while the process is single-threaded: os.umask can only be read by setting it,
    # and setting it later would race the image-writer threads that create files.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()


def _new_file_mode(target: Path) -> int:
    """The mode the written file gets: the existing file's mode on a rewrite, else what open() would give."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~UMASK


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Make a rename in `folder` durable; silently skipped where the platform cannot open folders."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _is_special(target: Path) -> bool:
    """True for a path that exists and is not a regular file (FIFO, device, socket), or that names one of the
    process's streams (/dev/stdout, /proc/self/fd/N: a shell redirect or `>>` must keep its file): never
    rename over it. A /dev or /proc path that does not exist is no stream: nothing can be written there."""
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return False
    if str(target).startswith(("/dev/", "/proc/")):
        return True
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside `path`; on clean exit it replaces `path`, on error it is removed.

    `-` is standard output; a FIFO or device is opened and written directly.
    """
    encoding = None if "b" in mode else "utf-8"
    if str(path) == STDOUT:
        stream = sys.stdout.buffer if "b" in mode else sys.stdout
        with output_errors(path):
            yield stream
            stream.flush()
        return
    if _is_special(Path(path)):
        with output_errors(path), open(path, mode, encoding=encoding) as handle:
            yield handle
        return
    target = Path(os.path.realpath(path))  # follow a symlink: replace what it points to, keep the link
    with output_errors(path):
        target.parent.mkdir(parents=True, exist_ok=True)
        file_mode = _new_file_mode(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with output_errors(path):
            os.fchmod(fd, file_mode)
            with os.fdopen(fd, mode, encoding=encoding) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())  # a full disk or quota can surface only here: before the rename
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_folder(target.parent)


def sync(handle: IO[Any]) -> None:
    """Flush and fsync an open output, so a full disk or quota is reported now (atomic_open does this itself
    before its rename; this is for a caller that must know the file is complete before writing the next)."""
    handle.flush()
    try:
        os.fsync(handle.fileno())
    except OSError as err:
        if err.errno != errno.EINVAL:  # EINVAL: a FIFO or device, which has nothing to sync
            raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def check_output_file(path: str | os.PathLike[str], what: str = "output") -> None:
    """Fail before any work when `path` could not be written at the end (SdevalError naming the path).

    `-`, FIFOs, devices and the process's streams pass; otherwise the path must not be a folder, and a temp file
    must really be creatable beside it (or, where its folder does not exist yet, a folder in the nearest existing
    ancestor). Nothing is left behind.
    """
    if str(path) == STDOUT:
        return
    if _is_special(Path(path)):
        return
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise SdevalError(f"{what} {path}: is a folder, expected a file path")
    _check_can_create(target.parent, f"{what} {path}")


def check_output_folder(path: str | os.PathLike[str], what: str = "output folder") -> None:
    """Fail before any work when `path` could not be used as an output folder (exists as a file, or nothing can
    really be created in it or, where it does not exist yet, in its nearest existing ancestor)."""
    target = Path(os.path.realpath(path))
    if target.exists() and not target.is_dir():
        raise SdevalError(f"{what} {path}: exists and is not a folder")
    _check_can_create(target, f"{what} {path}")


def _check_can_create(folder: Path, what: str) -> None:
    """Create and remove a temp file in `folder`, or a temp folder in its nearest existing ancestor when it does
    not exist yet. os.access is not enough: root passes it on /proc, read-only mounts and immutable folders."""
    ancestor = folder
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise SdevalError(f"{what}: cannot be created: {ancestor} is a file, not a folder")
    try:
        if ancestor == folder:
            fd, probe = tempfile.mkstemp(prefix=".sdeval-check-", suffix=".tmp", dir=ancestor)
            os.close(fd)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".sdeval-check-", dir=ancestor))
    except OSError as err:
        kind = "file" if ancestor == folder else "folder"
        raise SdevalError(
            f"{what}: cannot be written: cannot create a {kind} in {ancestor} ({err.strerror or err})"
        ) from None
