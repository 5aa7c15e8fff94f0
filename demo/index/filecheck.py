"""Which file a row was built from: recorded at build, checked before the app serves the clip.

An index row names its clip by path, and a path can come to point elsewhere after the build (the
clip replaced by a symlink to a private file, or by another file). The builders record, in each
local row's ``media`` entry, the file the path led to at build time: its resolved path, size,
modification time, inode and a digest of its first and last 64 KiB. :func:`same_file` tells
whether a file is still that one: the same inode, size and time (a plain request: one ``stat``),
else the same size and digest (the index and its clips were copied or moved elsewhere, which
changes inodes and often times, but not the bytes).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

MEDIA_KEY = "media"  # the row field that holds the record (never shown with a hit)
_PART = 64 * 1024  # bytes read from each end of the file for its digest


def file_digest(path: str | Path, size: int) -> str:
    """blake2b of the file's size, its first and its last 64 KiB (the whole file when smaller)."""
    h = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as f:
        h.update(f.read(_PART))
        if size > 2 * _PART:
            f.seek(size - _PART)
        h.update(f.read(_PART))
    return h.hexdigest()


def file_record(path: str | Path) -> dict[str, Any] | None:
    """The record of the local file ``path`` (symlinks followed); None for a URL or a missing file."""
    if "://" in str(path):
        return None
    try:
        real = Path(path).resolve()
        st = real.stat()
        digest = file_digest(real, st.st_size)
    except OSError:
        return None
    return {"file": str(real), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino,
            "digest": digest}


def same_file(path: Path, record: dict[str, Any], stat: os.stat_result | None = None) -> bool:
    """Whether the (resolved) file ``path`` is the file of ``record``: same inode, size and
    modification time, or else same size and digest (a copy of it)."""
    try:
        st = stat or path.stat()
        if st.st_size != record.get("size"):
            return False
        if st.st_ino == record.get("inode") and st.st_mtime_ns == record.get("mtime_ns"):
            return True
        return file_digest(path, st.st_size) == record.get("digest")
    except OSError:
        return False
