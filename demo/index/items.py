"""What to index: :class:`VideoItem` rows from a folder of videos or from a captions CSV.

Both sources give one item per video with its captions (several per video where the
source has them) and any extra metadata; :func:`demo.index.build.build_index` embeds them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo.errors import InputError
from demo.index.filecheck import MEDIA_KEY, file_record

VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".gif"})


@dataclass(frozen=True)
class VideoItem:
    """One video to index. ``path`` is a local file (or URL, for imports); ``metadata``
    holds extra row fields such as ``attributes`` or ``split``."""

    id: str
    path: str
    captions: Sequence[str] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    # What the index records as the path when it differs from ``path``: a CSV's relative
    # path stays relative (to the manifest's "media_root"), so an index and its clips
    # can move together.
    stored_path: str | None = None

    def row(self) -> dict[str, Any]:
        """The index's metadata row for this video; a local file's row records which file it is
        (:func:`demo.index.filecheck.file_record`), so the app serves it only while it still is."""
        extra = {k: v for k, v in self.metadata.items() if k not in ("id", "path", "captions", MEDIA_KEY)}
        path = self.stored_path or self.path
        record = file_record(self.path)
        media = {MEDIA_KEY: record} if record is not None else {}
        return {"id": self.id, "path": path, "captions": list(self.captions), **extra, **media}


def default_caption(path: str | Path) -> str:
    """``a_red-ball.mp4`` -> ``a red ball``."""
    return " ".join(Path(path).stem.replace("_", " ").replace("-", " ").split())


def _parse_value(value: str) -> Any:
    text = value.strip()
    if text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return value


def _read_caption_csv(csv_path: str | Path, path_column: str, caption_column: str) -> Any:
    import pandas as pd  # here: a quarter second to import, and only CSV sources need it

    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read captions CSV {csv_path}: {e}") from e
    missing = [c for c in (path_column, caption_column) if c not in df.columns]
    if missing:
        raise InputError(f"{csv_path} lacks column(s) {missing}; it has {list(df.columns)}")
    return df


def _visible_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def not_videos(folder: str | Path, captions_csv: str | Path | None = None) -> list[Path]:
    """The files under ``folder`` that :func:`items_from_folder` leaves out for their extension
    (hidden entries and the captions CSV aside), so that a build can list them."""
    root = Path(folder)
    sidecar = Path(captions_csv).resolve() if captions_csv is not None else None
    return [p for p in _visible_files(root) if p.suffix.lower() not in VIDEO_EXTENSIONS and p.resolve() != sidecar]


def items_from_folder(folder: str | Path, captions_csv: str | Path | None = None) -> list[VideoItem]:
    """Every video file under ``folder`` (recursively, hidden entries skipped), sorted by path.

    Captions come from ``captions_csv`` (columns ``path,caption``, matched by file name;
    several rows give several captions), else from the file name (:func:`default_caption`).
    Ids are paths relative to ``folder`` without the extension (with it where two clash). Rows
    store the path relative to ``folder``: build with ``media_root=folder`` (the CLI does), so
    the index finds its clips whatever the working folder, and can move together with them.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"video folder {root} does not exist")
    files = [p for p in _visible_files(root) if p.suffix.lower() in VIDEO_EXTENSIONS]
    captions: dict[str, list[str]] = {}
    if captions_csv is not None:
        df = _read_caption_csv(captions_csv, "path", "caption")
        for p, c in zip(df["path"], df["caption"], strict=True):
            if c.strip():
                captions.setdefault(Path(p).name, []).append(c.strip())
    stems = [p.relative_to(root).with_suffix("").as_posix() for p in files]
    clash = {s for s, n in Counter(stems).items() if n > 1}
    return [
        VideoItem(
            id=p.relative_to(root).as_posix() if stem in clash else stem,
            path=str(p),
            captions=captions.get(p.name) or [default_caption(p)],
            stored_path=p.relative_to(root).as_posix(),
        )
        for p, stem in zip(files, stems, strict=True)
    ]


def items_from_csv(
    csv_path: str | Path,
    path_column: str = "path",
    caption_column: str = "caption",
    id_column: str | None = None,
) -> list[VideoItem]:
    """Videos listed in a CSV, in first-appearance order.

    Several rows with the same path are several captions. Relative paths are resolved
    against the CSV's folder; URLs are kept. The id is ``id_column`` (default: an ``id``
    column if present, else the path as written). Other columns of a video's first row
    become metadata; strings that look like JSON objects/lists are parsed. For WebVid's
    CSV: ``items_from_csv(f, "contentUrl", "name", "videoid")``.
    """
    df = _read_caption_csv(csv_path, path_column, caption_column)
    id_column = id_column or ("id" if "id" in df.columns else None)
    if id_column is not None and id_column not in df.columns:
        raise InputError(f"{csv_path} lacks id column {id_column!r}; it has {list(df.columns)}")
    base = Path(csv_path).parent
    items: dict[str, dict[str, Any]] = {}
    for line, rec in enumerate(df.to_dict("records"), start=2):
        raw = rec[path_column].strip()
        if not raw:
            raise InputError(f"{csv_path} line {line}: empty {path_column!r}")
        if raw not in items:
            path = raw if "://" in raw or Path(raw).is_absolute() else str(base / raw)
            meta = {
                k: _parse_value(v)
                for k, v in rec.items()
                if k not in (path_column, caption_column, id_column) and str(v).strip()
            }
            vid = rec[id_column].strip() if id_column else raw
            items[raw] = {"id": vid, "path": path, "captions": [], "metadata": meta,
                          "stored_path": None if path == raw else raw}
        caption = rec[caption_column].strip()
        if caption and caption not in items[raw]["captions"]:
            items[raw]["captions"].append(caption)
    return [VideoItem(**d) for d in items.values()]
