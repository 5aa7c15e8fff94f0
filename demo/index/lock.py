"""One writer per index: an advisory lock beside the index folder, held while it is built or saved.

Two ``index build`` runs on the same ``--out`` used to both do all the work until one died at
the end. Now the second stops at once and names the first. The lock is ``.<name>.lock`` next to
``<name>`` (an ``flock`` on Linux and macOS, freed by the kernel when its process dies, so a
killed build never leaves a stale lock behind). It is reentrant within a process: a build that
holds it can save the index it built.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from demo.errors import IndexFormatError

_HELD: dict[Path, int] = {}  # lock file -> depth, for the locks this process holds
_FDS: dict[Path, int] = {}  # lock file -> the descriptor whose flock this process holds
_GUARD = threading.Lock()


def lock_path(target: str | Path) -> Path:
    """The lock file of the index folder ``target``."""
    path = Path(target).absolute()
    return path.with_name(f".{path.name}.lock")


def _acquire(path: Path) -> int:
    import fcntl  # POSIX only; Windows would need msvcrt.locking

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise IndexFormatError(
                f"{path.with_name(path.name[1:].removesuffix('.lock'))} is being written by {holder}: wait for "
                "it to finish (or stop it), then run this again"
            ) from err
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
    return fd


@contextmanager
def writer_lock(target: str | Path) -> Iterator[None]:
    """Hold the index folder ``target``'s writer lock for the block (IndexFormatError if another
    process holds it)."""
    path = lock_path(target)
    with _GUARD:
        depth = _HELD.get(path, 0)
        fd = _acquire(path) if depth == 0 else -1
        _HELD[path] = depth + 1
        if depth == 0:
            _FDS[path] = fd
    try:
        yield
    finally:
        with _GUARD:
            _HELD[path] -= 1
            if _HELD[path] == 0:
                del _HELD[path]
                os.close(_FDS.pop(path))  # closing the descriptor releases the flock

