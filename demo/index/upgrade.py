"""Large indexes saved before the first stage and the metadata table were written with them:
upgraded once, on load, in place.

An index of :data:`UPGRADE_MIN_ROWS` rows or more in an older format (version 2: metadata as
JSON lines, an IVF-PQ trained on every start or kept serialised; version 1: unnamed files) gets
what version 3 has, under the index's writer lock (:mod:`demo.index.lock`): its arrays are
hard-linked (copied where links fail) under a new write id, the metadata rows are streamed into
the Arrow table with their id order, the IVF-PQ is taken from the old file or trained, filled
(with a progress bar) and tuned, and the new manifest is written last; then the old write's
files go. A reader sees the old index or the new one, as for any write. When the folder cannot
be written (read-only, a full disk) the index loads as before and a warning says why. Smaller
older indexes load as before: their rows are few, and their flat first stage is the codes file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from demo.errors import IndexFormatError
from demo.files import atomic_write
from demo.index.format import ARRAYS, FORMAT_VERSION, MANIFEST, current_names, new_write_id
from demo.index.ivf import IVF_PQ, FirstStage, choose, ivf_from_array, write_ivf
from demo.index.lock import writer_lock
from demo.index.store import (
    _fingerprint,
    _names,
    check_folder,
    check_model,
    checksums,
    clear_leftovers,
    read_manifest,
    write_metadata,
)
from demo.index.table import json_default
from demo.models.fingerprint import ModelFingerprint

log = logging.getLogger(__name__)
UPGRADE_MIN_ROWS = 100_000
_WAIT_S = 600.0  # how long a load waits for another process's upgrade of the same folder


def needs_upgrade(manifest: dict[str, Any]) -> bool:
    """Whether an index with this manifest is upgraded on load."""
    return manifest.get("format_version") in (1, 2) and int(manifest.get("count") or 0) >= UPGRADE_MIN_ROWS


def upgrade(root: Path, expect: ModelFingerprint | None = None) -> bool:
    """Upgrade the index at ``root`` if it needs it (module docstring); True when this call did.
    Refuses (IndexFormatError) an index the ``expect`` model cannot search before any work."""
    try:
        check_folder(root)
        manifest = read_manifest(root)
    except IndexFormatError:
        return False  # the reader says what is wrong
    if not needs_upgrade(manifest):
        return False
    if expect is not None:
        check_model(root, manifest, _fingerprint(root, manifest)[0], expect)
    deadline = time.monotonic() + _WAIT_S
    while True:
        try:
            with writer_lock(root):
                manifest = read_manifest(root)  # again: another process may have done it meanwhile
                return needs_upgrade(manifest) and _upgrade_locked(root, manifest)
        except IndexFormatError as err:
            if "is being written" not in str(err) or time.monotonic() > deadline:
                raise
            log.info("%s is being written by another process; waiting for it", root)
            time.sleep(1.0)


def _upgrade_locked(root: Path, manifest: dict[str, Any]) -> bool:
    log.info("index %s (format %s, %d rows) was saved before its first stage and metadata table were written "
             "with it: building them once and saving them into the folder (later loads map them)", root,
             manifest.get("format_version"), manifest["count"])
    old = _names(manifest)
    write_id = new_write_id()
    embeddings = np.load(root / old["embeddings"], mmap_mode="r")
    stage = FirstStage.from_dict(manifest.get("first_stage")) if "first_stage" in manifest else choose(
        *embeddings.shape)
    names = current_names(write_id, ivf=stage.kind == IVF_PQ)
    try:
        for role in ARRAYS:
            _link(root / old[role], root / names[role])
        write_metadata(root, names, _json_rows(root / old["metadata"]))
        entry = _first_stage(root, old, names, embeddings, stage)
        new = {**manifest, "format_version": FORMAT_VERSION, "write_id": write_id, "first_stage": entry,
               "files": names, "checksums": checksums(root, names)}
        atomic_write(root / MANIFEST, json.dumps(new, indent=2, default=json_default))
    except OSError as err:
        _remove(root, names)
        log.warning("cannot save the upgrade of %s (%s): it loads as before this time (slower)", root,
                    err.strerror or err)
        return False
    except BaseException:
        _remove(root, names)
        raise
    clear_leftovers(root, keep=write_id)
    log.info("upgraded %s to format %d", root, FORMAT_VERSION)
    return True


def _first_stage(root: Path, old: dict[str, str], names: dict[str, str], embeddings: np.ndarray,
                 stage: FirstStage) -> dict[str, Any]:
    """Write the IVF file (from the old serialised one, or built now); return the manifest entry."""
    from demo.index.tuning import build_first_stage, tune

    if stage.kind != IVF_PQ:
        return stage.to_dict()
    if "ivf" in old and (root / old["ivf"]).is_file():
        ivf = ivf_from_array(np.load(root / old["ivf"], mmap_mode="r"))
        stage, report = tune(ivf, embeddings, stage)
        entry = {**stage.to_dict(), "tuned": report}
    else:
        entry, ivf = build_first_stage(embeddings, stage, progress=True)
    write_ivf(ivf, root / names["ivf"])
    return entry


def _json_rows(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as err:
                    raise IndexFormatError(f"{path} line {n + 1} is not JSON ({err}): the index is corrupt; "
                                           "rebuild it") from err


def _link(src: Path, dst: Path) -> None:
    """``dst`` names ``src``'s data: a hard link (no bytes copied), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _remove(root: Path, names: dict[str, str]) -> None:
    for name in names.values():
        (root / name).unlink(missing_ok=True)
