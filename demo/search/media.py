"""Where an index row's clip is: a URL, a local file, or a world clip rendered on demand.

Rows hold a URL, an absolute file, or a path relative to the index's ``media_root``. Rows of
the embedded world (``clips/<split>/<id>.mp4``) need no files at all: a clip missing from the
cache folder is rendered from its id (tens of milliseconds), under a lock so two requests for
the same clip never write it twice. Renders are single-threaded x264, so a clip's bytes are
the same whoever renders it (the app, the CLI, ``python -m demo synth``, an evaluation).

The app serves a row's local file by its id (:mod:`demo.app.ui` adds the ``/media/<id>``
route), never by a path the browser sends, so nothing beyond the index's own clips can be
fetched through it.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from demo.index.filecheck import MEDIA_KEY, same_file
from demo.index.video_index import VideoIndex
from demo.presets import ROOT
from demo.world import WorldConfig, clip_spec_by_id, render_to

log = logging.getLogger(__name__)

CACHE_ENV = "DEMO_CACHE"


def default_cache(folder: str | Path | None = None) -> Path:
    """Where world clips are rendered: ``folder``, else ``$DEMO_CACHE``, else ``<project>/cache/world``."""
    return Path(folder or os.environ.get(CACHE_ENV) or ROOT / "cache" / "world").expanduser().resolve()

_WORLD_PATH = re.compile(r"clips/(train|val|test)/((?:train|val|test)-\d{6})\.mp4")


def world_path(clip_id: str) -> str | None:
    """The world-relative path of a world clip id (``test-000123`` -> ``clips/test/test-000123.mp4``)."""
    split = clip_id.rpartition("-")[0]
    rel = f"clips/{split}/{clip_id}.mp4"
    return rel if _WORLD_PATH.fullmatch(rel) else None


def is_url(path: str) -> bool:
    return "://" in path


class RowPaths(Mapping[str, str]):
    """id -> stored path of an index's rows, read on demand: a 10M-row index makes no dict of them.
    Rows of long videos (windows with a ``video_id``) also answer for their video's id."""

    def __init__(self, index: VideoIndex) -> None:
        self.index = index
        self._videos: dict[str, int] | None = None  # video_id -> its first window's row, made on first need

    def _by_video(self) -> dict[str, int]:
        if self._videos is None:
            rows = self.index.metadata
            windows = len(rows) > 0 and "video_id" in rows[0]
            self._videos = {}
            for n, r in enumerate(rows if windows else ()):
                self._videos.setdefault(str(r["video_id"]), n)
        return self._videos

    def row(self, clip_id: str) -> dict[str, Any] | None:
        """The metadata row of ``clip_id`` (a long video: its first window's), or None."""
        row = self.index.row_of(clip_id)
        if row is None:
            row = self._by_video().get(clip_id)
        return None if row is None else self.index.metadata[row]

    def record(self, clip_id: str) -> dict[str, Any] | None:
        """The file the build recorded for ``clip_id`` (demo.index.filecheck), or None (older indexes)."""
        row = self.row(clip_id)
        record = None if row is None else row.get(MEDIA_KEY)
        return record if isinstance(record, dict) else None

    def __getitem__(self, clip_id: str) -> str:
        row = self.row(clip_id)
        if row is None:
            raise KeyError(clip_id)
        return str(row["path"])

    def __iter__(self) -> Iterator[str]:
        yield from self.index.ids
        yield from (v for v in self._by_video() if self.index.row_of(v) is None)

    def __len__(self) -> int:
        return len(self.index) + sum(1 for v in self._by_video() if self.index.row_of(v) is None)

    def first(self, count: int) -> list[tuple[str, str]]:
        """The first ``count`` rows' (id, path)."""
        return [(str(r["id"]), str(r["path"])) for r in itertools.islice(self.index.metadata, count)]


class MediaResolver:
    """Finds (or renders) the clip of each row of one index."""

    def __init__(self, index: VideoIndex, cache_dir: Path) -> None:
        self.cache_dir = cache_dir.resolve()
        root = index.info.get("media_root")
        if root and index.root is not None and not Path(root).is_absolute():
            root = str(index.root / root)  # recorded relative to the index folder
        self.media_root = Path(root).resolve() if root and Path(root).is_dir() else None
        self._paths = RowPaths(index)  # an index of long videos: each video by its own id too
        self._checked: dict[tuple[str, str, int, int, int], bool] = {}  # (id, file, inode, size, mtime) -> same
        self._lock = threading.Lock()
        sample = self._paths.first(50)
        self._world = bool(sample) and all(_WORLD_PATH.fullmatch(p.replace("\\", "/")) and
                                           world_path(i) == p.replace("\\", "/") for i, p in sample)

    def has_world_ids(self) -> bool:
        """Whether the rows are named like world clips (an index built from world files)."""
        sample = self._paths.first(50)
        return bool(sample) and all(world_path(i) for i, _ in sample)

    def is_world(self) -> bool:
        """Whether the index holds clips of the embedded world (renderable from their ids)."""
        return self._world

    def stored_path(self, clip_id: str) -> str | None:
        """The row's path as the index records it (None: no such id)."""
        return self._paths.get(clip_id)

    def resolve_id(self, clip_id: str) -> str | None:
        """A URL or an existing local file for row ``clip_id`` (None: unknown id or missing file)."""
        path = self._paths.get(clip_id)
        return None if path is None else self.resolve(clip_id, path)

    def resolve(self, clip_id: str, path: str) -> str | None:
        """A URL or an existing local file for the clip, rendering a world clip if need be;
        None when the file is gone (the UI then shows the caption without a player)."""
        if is_url(path):
            return path
        p = Path(path)
        if p.is_absolute() or self.media_root is not None:
            found = self._indexed_file(clip_id, self.media_root / p if self.media_root else p)
            if found is not None or p.is_absolute():
                return found
        target = (self.cache_dir / p).resolve()
        if not target.is_relative_to(self.cache_dir):  # "../" in a row: never write outside the cache
            return None
        if target.is_file():
            return str(target)
        if world_path(clip_id) == p.as_posix():
            return str(self._render(clip_id, target))
        return None

    def _indexed_file(self, clip_id: str, path: Path) -> str | None:
        """The file ``path`` (symlinks resolved) if it is still the one the row was built from.

        It must lie inside the media folder (for an absolute row without one: the row's own
        folder), or be the very file the build recorded (a CSV may list a link to a clip
        elsewhere); and, where the build recorded the file, be that file (same inode, size and
        time, or same bytes): a clip swapped for a link to a private file, or for another file,
        is not served. Indexes built before the record: the containment check alone.
        """
        record = self._paths.record(clip_id)
        try:
            real = path.resolve()
            st = real.stat()
        except (OSError, RuntimeError):  # missing, or a symlink loop
            return None
        root = self.media_root or path.parent.resolve()
        inside = real.is_relative_to(root)
        if not real.is_file() or not (inside or (record is not None and str(real) == record.get("file"))):
            return None
        if record is None or world_path(clip_id) == self._paths.get(clip_id):  # world clips: renderable, ours
            return str(real)
        key = (clip_id, str(real), st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self._checked:
            self._checked[key] = same_file(real, record, st)
        return str(real) if self._checked[key] else None

    def local_file(self, clip_id: str) -> Path | None:
        """The local file of row ``clip_id`` (rendered if need be); None for URLs, unknown ids and
        missing files. This is all the app's media route ever serves."""
        found = self.resolve_id(clip_id)
        return None if found is None or is_url(found) else Path(found)

    def _render(self, clip_id: str, target: Path) -> Path:
        with self._lock:
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                render_to(clip_spec_by_id(WorldConfig(), clip_id), target)
                log.debug("rendered %s", target)
        return target

    def world_ids_to_render(self) -> list[str]:
        """World clips of the index not yet in the cache (what :func:`prerender` would write)."""
        if not self.is_world():
            return []
        return [i for i, p in self._paths.items() if world_path(i) == p and not (self.cache_dir / p).is_file()]

    def examples(self, folder: Path, ids: Sequence[str]) -> list[Path]:
        """Example clips ``folder/<id>.mp4``; missing ones are rendered there (or into the
        cache when ``folder`` is read-only)."""
        out = []
        for clip_id in ids:
            path = folder / f"{clip_id}.mp4"
            if not path.is_file():
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                    self._render(clip_id, path)
                except OSError:
                    path = self._render(clip_id, self.cache_dir / "examples" / f"{clip_id}.mp4")
            out.append(path)
        return out


def prerender(cache_dir: str | Path, ids: Iterable[str], nice: int = 19) -> int:
    """Render the world clips ``ids`` into ``cache_dir`` (skipping those present); returns how many
    were written. Meant for a background process at the lowest priority (``nice``), so the clips
    of a first search are ready without slowing the searches themselves."""
    if nice:
        os.nice(nice)
    cache = Path(cache_dir)
    written = 0
    for clip_id in ids:
        rel = world_path(clip_id)
        target = cache / rel if rel else None
        if target is not None and not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            render_to(clip_spec_by_id(WorldConfig(), clip_id), target)
            written += 1
    return written
