"""Filling a :class:`~demo.index.video_index.VideoIndex`: from video files (resumable) or precomputed arrays.

The builder is resumable. While it runs, ``<out_dir>.partial/`` holds

- ``fingerprint.json``   the encoder's :class:`~demo.models.fingerprint.ModelFingerprint` (a restart with
                         another model is refused: its embeddings would not mix)
- ``shard-NNNNN.npy``    (B, D) float32 embeddings of one finished batch, and
  ``shard-NNNNN.json``   their ids, written after the array; both via temp file + rename
- ``failed.jsonl``       ``{"id", "path", "reason"}`` per file that could not be decoded

A restart skips every id already in a shard or in failed.jsonl. At the end the captions
are encoded, the index is written atomically to ``out_dir`` and the work folder removed.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from demo.errors import IndexFormatError, InputError, VideoDecodeError
from demo.index.video_index import MANIFEST, PARTIAL_SUFFIX, VideoIndex
from demo.models.fingerprint import ModelFingerprint

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".gif"})


class FrameEncoder(Protocol):
    """What :func:`build_index` needs from an encoder (``Clip4ClipEncoder`` provides it)."""

    @property
    def fingerprint(self) -> ModelFingerprint: ...

    def load_video(self, path: str | Path) -> tuple[Any, Any]: ...  # -> frames (T,3,S,S), mask (T,)

    def encode_frames(self, frames: Any, mask: Any) -> np.ndarray: ...  # (B,T,3,S,S), (B,T) -> (B, D)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...  # -> (N, D)


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
        """The index's metadata row for this video."""
        extra = {k: v for k, v in self.metadata.items() if k not in ("id", "path", "captions")}
        path = self.stored_path or self.path
        return {"id": self.id, "path": path, "captions": list(self.captions), **extra}


@dataclass(frozen=True)
class BuildReport:
    indexed: int  # videos in the written index
    skipped: list[tuple[str, str]]  # (path, reason) of every file that could not be decoded
    resumed_from: int  # videos whose embeddings were already in the work folder at start


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
    import pandas as pd

    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read captions CSV {csv_path}: {e}") from e
    missing = [c for c in (path_column, caption_column) if c not in df.columns]
    if missing:
        raise InputError(f"{csv_path} lacks column(s) {missing}; it has {list(df.columns)}")
    return df


def items_from_folder(folder: str | Path, captions_csv: str | Path | None = None) -> list[VideoItem]:
    """Every video file under ``folder`` (recursively, hidden entries skipped), sorted by path.

    Captions come from ``captions_csv`` (columns ``path,caption``, matched by file name;
    several rows give several captions), else from the file name (:func:`default_caption`).
    Ids are paths relative to ``folder`` without the extension (with it where two clash).
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"video folder {root} does not exist")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in VIDEO_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
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


def from_precomputed(
    embeddings: np.ndarray,
    metadata: Sequence[dict[str, Any]],
    codes: np.ndarray | None = None,
    *,
    model: str | ModelFingerprint = "Searchium-ai/clip4clip-webvid150k",
    encode_texts: Callable[[list[str]], np.ndarray] | None = None,
    text_batch_size: int = 256,
) -> VideoIndex:
    """An index from precomputed video embeddings (e.g. Searchium's WebVid files).

    embeddings: (N, D) floats (normalised here); metadata: N rows with ``id``, ``path`` and
    ``captions``; codes: optional (N, D/8) uint8 packed sign bits (must match the width, and
    are checked against sign(embeddings) on a sample: codes that disagree are replaced, with a
    warning, because queries are binarised as ``packbits(q > 0)``); model: a fingerprint, or a
    model name taken as meanP / 224 px / 12 frames / 1 fps of width D; encode_texts: text
    encoder for the captions (None: an index without video->text).
    """
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or not np.issubdtype(emb.dtype, np.floating):
        raise IndexFormatError(f"embeddings must be a float (N, D) array, got {emb.shape} {emb.dtype}")
    n, d = emb.shape
    fp = model if isinstance(model, ModelFingerprint) else ModelFingerprint(model, "meanP", d, 224, 12, 1.0)
    if fp.dim != d:
        raise IndexFormatError(f"embeddings are {d}-d but {fp.describe()} is {fp.dim}-d")
    if len(metadata) != n:
        raise IndexFormatError(f"{n} embeddings but {len(metadata)} metadata rows")
    if not np.isfinite(emb).all():
        bad = int((~np.isfinite(emb)).any(axis=1).sum())
        raise IndexFormatError(f"{bad} embedding row(s) hold NaN/inf")
    if codes is not None:
        codes = np.asarray(codes)
        if codes.shape != (n, d // 8) or codes.dtype != np.uint8:
            raise IndexFormatError(
                f"packed codes are {codes.shape} {codes.dtype}, expected ({n}, {d // 8}) uint8 "
                f"(one bit per dimension of the {d}-d embeddings)"
            )
        sample = np.random.default_rng(0).choice(n, size=min(n, 1000), replace=False)
        agree = float(np.mean(np.unpackbits(codes[sample], axis=1) == (emb[sample] > 0))) if n else 1.0
        if agree < 0.99:
            log.warning(
                "packed codes agree with sign(embeddings) on only %.1f%% of sampled bits; "
                "using codes recomputed from the embeddings",
                100 * agree,
            )
            codes = None
    rows = [dict(r) for r in metadata]
    cap_emb = cap_rows = None
    if encode_texts is not None:
        cap_emb, cap_rows = _encode_captions(encode_texts, rows, d, text_batch_size, progress=False)
    return VideoIndex.from_arrays(fp, emb, rows, cap_emb, cap_rows, codes)


def _encode_captions(
    encode_texts: Callable[[list[str]], np.ndarray],
    rows: Sequence[dict[str, Any]],
    dim: int,
    batch_size: int,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(M, D) caption embeddings and (M,) row of each, captions in row order."""
    from tqdm.auto import tqdm

    pairs = [(i, str(c)) for i, r in enumerate(rows) for c in r.get("captions") or []]
    parts = []
    for s in tqdm(range(0, len(pairs), batch_size), desc="captions", unit="batch", disable=not progress):
        texts = [c for _, c in pairs[s : s + batch_size]]
        out = np.asarray(encode_texts(texts), dtype=np.float32)
        if out.shape != (len(texts), dim):
            raise ValueError(
                f"encode_texts returned {out.shape} for {len(texts)} captions, expected (B, {dim})"
            )
        parts.append(out)
    emb = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
    return emb, np.array([i for i, _ in pairs], dtype=np.int64)


# --------------------------------------------------------------------- builder


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_shards(work: Path) -> tuple[dict[str, np.ndarray], int]:
    """Embeddings by id from finished shards, and the next free shard number."""
    done: dict[str, np.ndarray] = {}
    last = -1
    for ids_file in sorted(work.glob("shard-*.json")):
        last = max(last, int(ids_file.stem.split("-")[1]))
        try:
            ids = json.loads(ids_file.read_text())
            emb = np.load(ids_file.with_suffix(".npy"))
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable shard %s: %s", ids_file, e)
            continue
        if len(ids) != len(emb):
            log.warning("ignoring shard %s: %d ids but %d embeddings", ids_file, len(ids), len(emb))
            continue
        done.update(zip(ids, emb, strict=True))
    return done, last + 1


def _read_failed(work: Path) -> dict[str, tuple[str, str]]:
    failed: dict[str, tuple[str, str]] = {}
    path = work / "failed.jsonl"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                failed[str(rec["id"])] = (str(rec["path"]), str(rec["reason"]))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by an interrupt
    return failed


def _stack(xs: list[Any]) -> Any:
    if isinstance(xs[0], np.ndarray):
        return np.stack(xs)
    import torch

    return torch.stack(xs)


def _decoded(
    batches: list[list[VideoItem]], load: Callable[[VideoItem], Any], pool: ThreadPoolExecutor | None
) -> Iterator[tuple[list[VideoItem], list[Any]]]:
    """Yield (batch, load results). With a pool, the next batch decodes while the caller
    encodes the current one (decoders and torch both release the GIL)."""
    if pool is None:
        for batch in batches:
            yield batch, [load(it) for it in batch]
        return
    pending: tuple[list[VideoItem], list[Future[Any]]] | None = None
    for batch in batches:
        futures = [pool.submit(load, it) for it in batch]  # queued before the last batch is handed out
        if pending is not None:
            yield pending[0], [f.result() for f in pending[1]]
        pending = (batch, futures)
    if pending is not None:
        yield pending[0], [f.result() for f in pending[1]]


def _open_work_folder(work: Path, fp: ModelFingerprint) -> None:
    fp_file = work / "fingerprint.json"
    if fp_file.exists():
        old = ModelFingerprint.from_dict(json.loads(fp_file.read_text()))
        if old != fp:
            raise IndexFormatError(
                f"work folder {work} was started with {old} but the encoder is {fp}; "
                f"finish it with the original model or delete {work} to start over"
            )
        return
    work.mkdir(parents=True, exist_ok=True)
    _atomic_write(fp_file, json.dumps(fp.to_dict(), indent=2).encode())


def build_index(
    items: Iterable[VideoItem],
    out_dir: str | Path,
    encoder: FrameEncoder,
    batch_size: int = 8,
    progress: bool = True,
    overwrite: bool = False,
    text_batch_size: int = 64,
    num_workers: int = 0,
    model_path: str | None = None,
    media_root: str | Path | None = None,
) -> BuildReport:
    """Encode ``items`` with ``encoder`` into an index at ``out_dir``, resumably.

    Files that fail to decode (VideoDecodeError/OSError from ``encoder.load_video``) are
    recorded and skipped. ``num_workers`` > 0 decodes each batch's files in that many
    threads. Raises IndexFormatError if ``out_dir`` holds an index (without ``overwrite``),
    if the work folder belongs to another model, or if no file at all could be decoded
    (the work folder is then kept).
    """
    from tqdm.auto import tqdm

    items = list(items)
    if not items:
        raise InputError("no videos to index")
    ids = [it.id for it in items]
    dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dupes:
        raise InputError(f"video ids must be unique; repeated: {dupes[:5]}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    out = Path(out_dir)
    if (out / MANIFEST).exists() and not overwrite:
        raise IndexFormatError(
            f"{out} already holds an index; pass overwrite=True (--overwrite) to replace it"
        )
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).exists())):
        raise IndexFormatError(f"{out} exists and is not an index folder; refusing to write there")
    fp = encoder.fingerprint
    work = out.with_name(out.name + PARTIAL_SUFFIX)
    _open_work_folder(work, fp)

    wanted = set(ids)
    done, shard_no = _read_shards(work)
    failed = _read_failed(work)
    resumed_from = len(wanted & done.keys())
    todo = [it for it in items if it.id not in done and it.id not in failed]
    if resumed_from or len(todo) < len(items):
        log.info("resuming %s: %d embedded, %d failed, %d to go", work, resumed_from, len(failed), len(todo))

    def load(it: VideoItem) -> tuple[Any, Any] | str:
        try:
            return encoder.load_video(it.path)
        except (VideoDecodeError, OSError) as e:
            return str(e) or type(e).__name__

    batches = [todo[s : s + batch_size] for s in range(0, len(todo), batch_size)]
    pool = ThreadPoolExecutor(num_workers) if num_workers > 0 else None
    bar = tqdm(
        total=len(items), initial=len(items) - len(todo), desc="indexing", unit="video", disable=not progress
    )
    try:
        for batch, results in _decoded(batches, load, pool):
            ok, frames, masks = [], [], []
            for it, res in zip(batch, results, strict=True):
                if isinstance(res, str):
                    log.warning("skipping %s: %s", it.path, res)
                    failed[it.id] = (it.path, res)
                    with open(work / "failed.jsonl", "a", encoding="utf-8") as f:
                        f.write(json.dumps({"id": it.id, "path": it.path, "reason": res}) + "\n")
                        f.flush()
                        os.fsync(f.fileno())
                else:
                    ok.append(it.id)
                    frames.append(res[0])
                    masks.append(res[1])
            if ok:
                emb = np.asarray(encoder.encode_frames(_stack(frames), _stack(masks)), dtype=np.float32)
                if emb.shape != (len(ok), fp.dim) or not np.isfinite(emb).all():
                    raise ValueError(
                        f"encode_frames gave {emb.shape} (finite: {np.isfinite(emb).all()}), "
                        f"expected finite ({len(ok)}, {fp.dim})"
                    )
                name = f"shard-{shard_no:05d}"
                buf = io.BytesIO()
                np.save(buf, emb)
                _atomic_write(work / f"{name}.npy", buf.getvalue())
                _atomic_write(work / f"{name}.json", json.dumps(ok).encode())  # written last: shard done
                done.update(zip(ok, emb, strict=True))
                shard_no += 1
            bar.update(len(batch))
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    skipped = [failed[i] for i in ids if i in failed]
    kept = [it for it in items if it.id in done]
    if not kept:
        reasons = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
        raise IndexFormatError(
            f"no video could be decoded ({len(skipped)} tried, e.g. {reasons}); "
            f"the failures are listed in {work / 'failed.jsonl'}"
        )
    rows = [it.row() for it in kept]
    cap_emb, cap_rows = _encode_captions(encoder.encode_texts, rows, fp.dim, text_batch_size, progress)
    index = VideoIndex.from_arrays(fp, np.stack([done[it.id] for it in kept]), rows, cap_emb, cap_rows)
    if model_path:
        index.info["model_path"] = model_path
    if media_root:
        index.info["media_root"] = str(Path(media_root).resolve())
    index.save(out, overwrite=overwrite)
    shutil.rmtree(work, ignore_errors=True)
    log.info("indexed %d videos into %s (%d skipped, %d resumed)", len(kept), out, len(skipped), resumed_from)
    return BuildReport(indexed=len(kept), skipped=skipped, resumed_from=resumed_from)
