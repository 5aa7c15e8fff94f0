"""The test sets the evaluation runs on: the embedded world's test split and WebVid-style CSVs.

A :class:`Corpus` lists V videos (id, file, captions with the canonical one first) plus
the subsets that get their own rows (time-reversal pairs, held-out combinations).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from demo.errors import InputError
from demo.presets import shown_path
from demo.world import WorldConfig, synth

log = logging.getLogger(__name__)

DEFAULT_WORLD = Path("work/embedded/world")

@dataclass(frozen=True)
class Corpus:
    """V test videos; ``captions[v]`` lists video v's captions, the canonical one first."""

    source: str
    ids: list[str]
    paths: list[str]
    captions: list[list[str]]
    subsets: dict[str, np.ndarray] = field(default_factory=dict)  # task -> video rows
    twins: np.ndarray | None = None  # (V,) row of the time-reversed twin, -1 for none
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (video, reason)
    attributes: list[dict[str, Any]] | None = None  # world clips: each video's attributes (JSON form)

    def caption_table(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """All captions (C,), their video rows (C,), and each video's canonical caption (V,)."""
        texts = [c for caps in self.captions for c in caps]
        caption_video = np.repeat(np.arange(len(self.ids)), [len(c) for c in self.captions])
        canonical = np.concatenate([[0], np.cumsum([len(c) for c in self.captions])[:-1]]).astype(np.int64)
        return texts, caption_video, canonical

    def keep(self, rows: np.ndarray, reasons: dict[int, str]) -> Corpus:
        """The corpus restricted to video ``rows``; dropped videos are added to ``skipped``."""
        new = np.full(len(self.ids), -1)
        new[rows] = np.arange(len(rows))
        twins = None if self.twins is None else np.where(self.twins >= 0, new[np.maximum(self.twins, 0)], -1)
        return replace(self, ids=[self.ids[i] for i in rows], paths=[self.paths[i] for i in rows],
                       captions=[self.captions[i] for i in rows],
                       subsets={k: new[v][new[v] >= 0] for k, v in self.subsets.items()},
                       twins=None if twins is None else twins[rows],
                       attributes=None if self.attributes is None else [self.attributes[i] for i in rows],
                       skipped=self.skipped + [(self.ids[i], r) for i, r in sorted(reasons.items())])


def world_corpus(world_dir: str | Path = DEFAULT_WORLD, limit: int | None = None, workers: int = 2) -> Corpus:
    """The world's test split from ``test.jsonl`` + ``clips/test/``; renders missing clips first."""
    world = Path(world_dir)
    jsonl = world / "test.jsonl"
    rows = _read_jsonl(jsonl) if jsonl.is_file() else []
    short = limit is not None and len(rows) < limit
    if not rows or short or any(not (world / r["path"]).is_file() for r in rows[:limit]):
        # Never shrink an existing test.jsonl: render at least the clips it lists.
        count = None if limit is None else max(len(rows), limit)
        log.info("rendering the test clips of %s", world)
        synth(world, WorldConfig(), splits=("test",), limit=count, workers=workers)
        rows = _read_jsonl(jsonl)
    rows = rows[:limit]
    pairs: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if r.get("attributes", {}).get("pair"):
            pairs.setdefault(r["attributes"]["pair"], []).append(i)
    twins = np.full(len(rows), -1, dtype=np.int64)
    for members in pairs.values():
        if len(members) == 2:
            twins[members[0]], twins[members[1]] = members[1], members[0]
    heldout = [i for i, r in enumerate(rows) if r.get("attributes", {}).get("heldout")]
    # Named, not located: the clips are rendered from the world's seed wherever it runs.
    return Corpus("the embedded world's test split", [r["id"] for r in rows], [str(world / r["path"]) for r in rows],
                  [list(r["captions"]) for r in rows],
                  subsets={"t2v-pairs": np.flatnonzero(twins >= 0),
                           "t2v-heldout": np.array(heldout, np.int64)},
                  twins=twins, attributes=[r["attributes"] for r in rows])


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def webvid_corpus(data_csv: str | Path, videos_dir: str | Path, limit: int | None = None,
                  id_column: str = "videoid", caption_column: str = "name",
                  path_column: str | None = None) -> Corpus:
    """Videos of a WebVid-style CSV (one or more caption rows per video), in CSV order.

    A video's file is ``videos_dir/<id>.mp4``, or, with ``path_column``, that column's
    value (a URL's file name, or a path relative to ``videos_dir``). Missing files are
    skipped and reported; ``limit`` counts videos whose files exist.
    """
    import pandas as pd

    try:
        df = pd.read_csv(data_csv, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read {data_csv}: {err}") from err
    needed = [c for c in (id_column, caption_column, path_column) if c]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise InputError(f"{data_csv} lacks column(s) {missing}; it has {list(df.columns)} "
                         "(see --id-column/--caption-column/--path-column)")
    root = Path(videos_dir)
    videos: dict[str, tuple[str, list[str]]] = {}
    for rec in df.to_dict("records"):
        vid, caption = str(rec[id_column]).strip(), str(rec[caption_column]).strip()
        if vid not in videos:
            raw = str(rec[path_column]).strip() if path_column else f"{vid}.mp4"
            name = raw.split("?")[0].rsplit("/", 1)[-1] if "://" in raw else raw
            videos[vid] = (str(root / name), [])
        if caption and caption not in videos[vid][1]:
            videos[vid][1].append(caption)
    ids: list[str] = []
    skipped: list[tuple[str, str]] = []
    for vid, (path, caps) in videos.items():
        if limit is not None and len(ids) >= limit:
            break
        if not caps or not Path(path).is_file():
            skipped.append((vid, "no caption" if not caps else f"missing file {path}"))
        else:
            ids.append(vid)
    if skipped:
        log.warning("%d video(s) skipped (missing file or caption), e.g. %s", len(skipped), skipped[:3])
    return Corpus(shown_path(data_csv), ids, [videos[i][0] for i in ids], [videos[i][1] for i in ids],
                  skipped=skipped)
