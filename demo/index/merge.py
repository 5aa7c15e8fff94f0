"""A build's work folder merged into an index folder, streamed: the embeddings never sit in memory.

The local builder (:mod:`demo.index.build`) keeps every finished embedding in a dict and stacks
them at the end; fine for thousands of videos, 2 GB of float32 at a million. The distributed
engine's driver instead keeps only the ids of each finished shard (:class:`ShardLedger`) and
:func:`merge_index` writes the index through memory-mapped staging files in the work folder:

1. the shards, one at a time, are normalised into ``embeddings`` (float16) and ``codes`` at their
   rows (the items' order, as the local builder writes them: same ids, same order);
2. the captions, embedded by whatever ``encode`` streams back, into ``caption_embeddings``;
3. the first stage (:func:`demo.index.tuning.build_first_stage`): an IVF-PQ trained from the staged
   rows and its search depth tuned when the index is large;
4. :func:`demo.index.store.write_index_folder` copies the staged files into the index folder
   (atomic, manifest last), the metadata rows streamed line by line.

The arithmetic is the local builder's row for row (``l2_normalize`` in float32, then float16;
codes from the float32 rows), so both engines write the same index.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.format import open_memmap

from demo.index.binary import binarize, l2_normalize
from demo.index.format import make_manifest
from demo.index.items import VideoItem
from demo.index.store import write_index_folder
from demo.index.tuning import build_first_stage
from demo.index.workfolder import append_failure, open_work_folder, read_failed, write_shard
from demo.models.fingerprint import ModelFingerprint

log = logging.getLogger(__name__)

# (M,) caption positions and their (M', D) embeddings, as many batches as it takes
CaptionStream = Callable[[list[str]], Iterable[tuple[np.ndarray, np.ndarray]]]


class ShardLedger:
    """A build's work folder (layout in :mod:`demo.index.build`), holding only the ids of its
    finished shards, not their embeddings: ``done`` maps each id to its shard's number."""

    def __init__(self, path: Path, fingerprint: ModelFingerprint) -> None:
        open_work_folder(path, fingerprint)
        self.path = path
        self.failed = read_failed(path)
        self.done: dict[str, int] = {}
        self.shards: list[int] = []
        for ids_file in sorted(path.glob("shard-*.json")):
            number = ids_file.stem.split("-")[1]
            try:
                ids = json.loads(ids_file.read_text())
            except (OSError, ValueError) as err:
                log.warning("ignoring unreadable shard %s: %s", ids_file, err)
                continue
            if number.isdigit() and isinstance(ids, list) and ids_file.with_suffix(".npy").is_file():
                self._record(int(number), [str(i) for i in ids])
        self._next = max(self.shards, default=-1) + 1

    def _record(self, number: int, ids: list[str]) -> None:
        self.shards.append(number)
        self.done.update(dict.fromkeys(ids, number))  # a later shard wins, as in the local builder
        for i in ids:
            self.failed.pop(i, None)

    def add_shard(self, ids: list[str], embeddings: np.ndarray) -> None:
        write_shard(self.path, self._next, ids, embeddings)
        self._record(self._next, ids)
        self._next += 1

    def add_failure(self, item: VideoItem, reason: str) -> None:
        self.failed[item.id] = append_failure(self.path, item, reason)

    def read(self, number: int) -> tuple[list[str], np.ndarray]:
        """The ids and (B, D) embeddings of one shard."""
        name = self.path / f"shard-{number:05d}"
        return json.loads(name.with_suffix(".json").read_text()), np.load(name.with_suffix(".npy"))


def _stage_videos(ledger: ShardLedger, kept: list[VideoItem], staging: Path, dim: int) -> dict[str, np.ndarray]:
    row_of = {it.id: r for r, it in enumerate(kept)}
    emb = open_memmap(staging / "embeddings.npy", mode="w+", dtype=np.float16, shape=(len(kept), dim))
    codes = open_memmap(staging / "codes.npy", mode="w+", dtype=np.uint8, shape=(len(kept), dim // 8))
    for number in ledger.shards:
        ids, vectors = ledger.read(number)
        # rows of this shard that are kept and not overwritten by a later shard
        mine = [(j, row_of[i]) for j, i in enumerate(ids) if i in row_of and ledger.done.get(i) == number]
        if not mine:
            continue
        src, dst = (np.array(x, dtype=np.int64) for x in zip(*mine, strict=True))
        x = l2_normalize(np.asarray(vectors[src], dtype=np.float32))
        emb[dst], codes[dst] = x.astype(np.float16), binarize(x)
    emb.flush()
    codes.flush()
    return {"embeddings": emb, "codes": codes}


def _stage_captions(kept: list[VideoItem], encode: CaptionStream, staging: Path, dim: int
                    ) -> dict[str, np.ndarray]:
    pairs = [(r, str(c)) for r, it in enumerate(kept) for c in it.row()["captions"]]
    cap = open_memmap(staging / "caption_embeddings.npy", mode="w+", dtype=np.float16, shape=(len(pairs), dim))
    filled = np.zeros(len(pairs), dtype=bool)
    for positions, vectors in encode([c for _, c in pairs]) if pairs else ():
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(positions), dim):
            raise ValueError(f"caption encoder gave {vectors.shape} for {len(positions)} captions, expected "
                             f"(B, {dim})")
        cap[positions] = l2_normalize(vectors).astype(np.float16)
        filled[positions] = True
    if not filled.all():
        raise ValueError(f"{int((~filled).sum())} of {len(pairs)} captions came back without an embedding")
    cap.flush()
    return {"caption_embeddings": cap, "caption_video": np.array([r for r, _ in pairs], dtype=np.int64)}


def _rows(kept: list[VideoItem]) -> Iterator[dict[str, Any]]:
    for it in kept:  # what VideoIndex.from_arrays makes of a row
        r = it.row()
        yield {**r, "id": str(r["id"]), "path": str(r["path"]), "captions": list(r.get("captions") or [])}


def merge_index(ledger: ShardLedger, items: list[VideoItem], out: Path, fingerprint: ModelFingerprint,
                encode_captions: CaptionStream, info: dict[str, Any], overwrite: bool = False) -> int:
    """Write the index of every item that the ledger holds (in ``items``' order) to ``out``;
    returns its size. ``encode_captions(texts)`` yields (positions, embeddings) batches covering
    every text; ``info`` holds the optional manifest fields (the first stage is chosen here)."""
    kept = [it for it in items if it.id in ledger.done]
    staging = ledger.path / "merge"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    dim = fingerprint.dim
    arrays = {**_stage_videos(ledger, kept, staging, dim), **_stage_captions(kept, encode_captions, staging, dim)}
    stage, ivf = build_first_stage(arrays["embeddings"])
    created = datetime.now(UTC).isoformat(timespec="seconds")
    manifest = make_manifest(fingerprint, len(kept), len(arrays["caption_video"]), created,
                             {**info, "first_stage": stage})
    write_index_folder(out, arrays, _rows(kept), manifest, overwrite, first_stage=ivf)
    del arrays, ivf
    shutil.rmtree(staging, ignore_errors=True)
    return len(kept)
