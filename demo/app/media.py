"""Turning an index row's ``path`` into something a browser can play.

Rows hold a URL, an absolute file, or a path relative to the index's ``media_root``.
Rows of the embedded world (``clips/<split>/<id>.mp4``) need no files at all: a clip
missing from the cache folder is rendered from its id on demand (a few ms), under a
lock so two requests for the same clip never write it twice. The app serves files only
from the folders :meth:`MediaResolver.serve_dirs` names.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from demo.index.video_index import VideoIndex

log = logging.getLogger(__name__)

_WORLD_PATH = re.compile(r"clips/(train|val|test)/((?:train|val|test)-\d{6})\.mp4")
_MAX_SERVE_DIRS = 32  # beyond this many folders of absolute paths, serve their common parent


def world_path(clip_id: str) -> str | None:
    """The world-relative path of a world clip id (``test-000123`` -> ``clips/test/test-000123.mp4``)."""
    split = clip_id.rpartition("-")[0]
    rel = f"clips/{split}/{clip_id}.mp4"
    return rel if _WORLD_PATH.fullmatch(rel) else None


class MediaResolver:
    """Finds (or renders) the clip of each corpus row."""

    def __init__(self, index: VideoIndex, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        root = index.info.get("media_root")
        self.media_root = Path(root) if root and Path(root).is_dir() else None
        self._paths = {str(r["id"]): str(r["path"]) for r in index.metadata}
        self._lock = threading.Lock()
        sample = list(self._paths.items())[:50]
        self._world = bool(sample) and all(_WORLD_PATH.fullmatch(p.replace("\\", "/")) and
                                           world_path(i) == p.replace("\\", "/") for i, p in sample)

    def has_world_ids(self) -> bool:
        """Whether the rows are named like world clips (an index built from world files)."""
        return bool(self._paths) and all(world_path(i) for i in list(self._paths)[:50])

    def is_world(self) -> bool:
        """Whether the index holds clips of the embedded world (renderable from their ids)."""
        return self._world

    def resolve_id(self, clip_id: str) -> str | None:
        return self.resolve(clip_id, self._paths[clip_id]) if clip_id in self._paths else None

    def resolve(self, clip_id: str, path: str) -> str | None:
        """A URL or an existing local file for the clip, rendering a world clip if need be;
        None when the file is gone (the UI then shows the caption without a player)."""
        if "://" in path:
            return path
        p = Path(path)
        if p.is_absolute():
            return str(p) if p.is_file() else None
        if self.media_root is not None and (self.media_root / p).is_file():
            return str(self.media_root / p)
        target = (self.cache_dir / p).resolve()
        if not target.is_relative_to(self.cache_dir):  # "../" in a row: never write outside the cache
            return None
        if target.is_file():
            return str(target)
        if world_path(clip_id) == p.as_posix():
            return str(self._render(clip_id, target))
        return str(p.resolve()) if p.is_file() else None

    def _render(self, clip_id: str, target: Path) -> Path:
        from demo.world import WorldConfig, clip_spec_by_id, render_to

        with self._lock:
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                render_to(clip_spec_by_id(WorldConfig(), clip_id), target)
                log.debug("rendered %s", target)
        return target

    def serve_dirs(self) -> list[Path]:
        """The narrowest folders that hold every local clip of the index (and the cache)."""
        dirs = {self.cache_dir}
        if self.media_root is not None:
            dirs.add(self.media_root)
        parents = {Path(p).parent for p in self._paths.values() if "://" not in p and Path(p).is_absolute()}
        if len(parents) > _MAX_SERVE_DIRS:
            parents = {Path(os.path.commonpath([str(p) for p in parents]))}
        return sorted(dirs | parents)

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
