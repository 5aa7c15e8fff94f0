"""VideoIndex folder format, search, describe, import, and the resumable builder.

No model is needed: a fake encoder turns the bytes of dummy "video" files into frames
and projects frame means through a fixed random matrix.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from demo.errors import IndexFormatError, InputError, VideoDecodeError
from demo.index import store
from demo.index.binary import binarize, build_binary_index, hamming_search
from demo.index.build import build_index
from demo.index.format import FORMAT_VERSION, MANIFEST
from demo.index.items import VideoItem, default_caption, items_from_csv, items_from_folder
from demo.index.precomputed import from_precomputed
from demo.index.store import data_files
from demo.index.video_index import VideoIndex
from demo.models.fingerprint import ModelFingerprint

DIM = 32
FP = ModelFingerprint("fake/clip4clip-tiny", "meanP", DIM, 8, 4, 1.0)


def _seed(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


class FakeEncoder:
    """Deterministic stand-in for Clip4ClipEncoder; counts what it is asked to do."""

    def __init__(self, fingerprint: ModelFingerprint = FP, interrupt_after: int | None = None) -> None:
        self.fingerprint = fingerprint
        self.interrupt_after = interrupt_after  # KeyboardInterrupt on encode_frames call n+1
        self.attempted: list[str] = []  # every load_video call
        self.loaded: list[str] = []  # the ones that decoded
        self.encode_calls = 0
        self.proj = np.random.default_rng(0).normal(size=(3 * 8 * 8, fingerprint.dim)).astype(np.float32)

    def load_video(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        p = Path(path)
        self.attempted.append(p.name)
        if p.name.startswith("bad"):
            raise VideoDecodeError(f"cannot decode {path}: moov atom not found")
        self.loaded.append(p.name)
        rng = np.random.default_rng(_seed(p.read_bytes().hex()))
        return rng.normal(size=(4, 3, 8, 8)).astype(np.float32), np.ones(4, dtype=bool)

    def encode_frames(self, frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.interrupt_after is not None and self.encode_calls >= self.interrupt_after:
            raise KeyboardInterrupt
        self.encode_calls += 1
        assert frames.shape[1:] == (4, 3, 8, 8) and mask.shape == frames.shape[:2]
        return frames.mean(axis=1).reshape(len(frames), -1) @ self.proj

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return np.stack([np.random.default_rng(_seed(t)).normal(size=self.fingerprint.dim) for t in texts])


def make_videos(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(hashlib.sha256(name.encode()).digest() * 4)  # distinct dummy content
        paths.append(p)
    return paths


def clustered(n: int, dim: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    points = centres[rng.integers(0, clusters, size=n)] + 0.35 * rng.normal(size=(n, dim))
    queries = points[rng.choice(n, size=60, replace=False)] + 0.2 * rng.normal(size=(60, dim))
    return points.astype(np.float32), queries.astype(np.float32)


def small_index(n: int = 40, seed: int = 0) -> VideoIndex:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, DIM))
    rows = [
        {
            "id": f"v{i}",
            "path": f"/videos/v{i}.mp4",
            "captions": [f"clip {i} a", f"clip {i} b"],
            "split": "test",
        }
        for i in range(n)
    ]
    caps = rng.normal(size=(2 * n, DIM))
    return VideoIndex.from_arrays(FP, emb, rows, caps, np.repeat(np.arange(n), 2))


def test_save_load_round_trip(tmp_path: Path) -> None:
    index = small_index()
    q = np.random.default_rng(1).normal(size=(3, DIM)).astype(np.float32)
    before = index.search(q, k=5, exact=True)
    index.save(tmp_path / "idx")
    loaded = VideoIndex.load(tmp_path / "idx", expect=FP)

    assert isinstance(loaded.embeddings, np.memmap) and loaded.embeddings.dtype == np.float16
    assert np.load(data_files(tmp_path / "idx")["embeddings"]).dtype == np.float16
    np.testing.assert_array_equal(loaded.embeddings, index.embeddings)
    np.testing.assert_array_equal(loaded.codes, binarize(index.embeddings))
    np.testing.assert_array_equal(loaded.caption_video, index.caption_video)
    assert loaded.metadata == index.metadata and loaded.fingerprint == FP
    manifest = json.loads((tmp_path / "idx" / MANIFEST).read_text())
    assert manifest["format_version"] == FORMAT_VERSION == 3 and manifest["count"] == 40 and manifest["captions"] == 80
    assert manifest["model"] == FP.model and manifest["dim"] == DIM and manifest["pooling"] == "meanP"
    assert loaded.search(q, k=5, exact=True) == before
    # Embeddings are stored unit-length.
    np.testing.assert_allclose(np.linalg.norm(loaded.embeddings.astype(np.float32), axis=1), 1, atol=2e-3)
    # No temp folder left behind (the writer lock file stays beside the index).
    assert sorted(p.name for p in tmp_path.iterdir()) == [".idx.lock", "idx"]


def test_binary_rerank_matches_exact(tmp_path: Path) -> None:
    points, queries = clustered(3000, 64, clusters=60, seed=2)
    fp = ModelFingerprint("m", "meanP", 64, 8, 4, 1.0)
    rows = [{"id": str(i), "path": f"{i}.mp4", "captions": []} for i in range(len(points))]
    index = VideoIndex.from_arrays(fp, points, rows)
    exact = index.search(queries, k=10, exact=True)
    binary = index.search(queries, k=10, rerank=100)
    agree = np.mean([e[0].id == b[0].id for e, b in zip(exact, binary, strict=True)])
    assert agree >= 0.9, agree
    full = index.search(queries, k=10, rerank=len(points))  # reranking everything is exact search
    for e, b in zip(exact, full, strict=True):
        assert [h.id for h in e] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in e], [h.score for h in b], rtol=1e-5)
    assert [h.rank for h in exact[0]] == list(range(1, 11))
    assert all(h[0].score >= h[-1].score for h in binary)


def test_k_larger_than_count_is_clamped_and_faiss_padding_dropped() -> None:
    index = small_index(n=5)
    q = np.random.default_rng(3).normal(size=DIM).astype(np.float32)
    for exact in (True, False):
        (hits,) = index.search(q, k=10, exact=exact)
        assert sorted(h.id for h in hits) == [f"v{i}" for i in range(5)]
    cands = index.hamming_candidates(q[None], 8)[0]
    assert sorted(cands.tolist()) == [0, 1, 2, 3, 4]
    raw = hamming_search(build_binary_index(index.codes, DIM), q[None], 8)  # what faiss returns unfiltered
    assert (raw == -1).sum() == 3


def test_hit_fields() -> None:
    index = small_index()
    hit = index.search(index.vector("v7"), k=1, exact=True)[0][0]
    assert (hit.rank, hit.id, hit.caption, hit.path_or_url) == (1, "v7", "clip 7 a", "/videos/v7.mp4")
    assert hit.metadata["split"] == "test" and hit.score == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(InputError, match="D=32"):
        index.search(np.zeros(5, np.float32))


def test_manifest_mismatch_names_both_models(tmp_path: Path) -> None:
    small_index().save(tmp_path / "idx")
    other = ModelFingerprint("Searchium-ai/clip4clip-webvid150k", "seqTransf", DIM, 224, 12, 1.0)
    with pytest.raises(IndexFormatError) as err:
        VideoIndex.load(tmp_path / "idx", expect=other)
    msg = str(err.value)
    assert "fake/clip4clip-tiny" in msg and "clip4clip-webvid150k" in msg and "seqTransf" in msg
    assert "rebuild" in msg and str(tmp_path / "idx") in msg
    # Same model by another path, other frame settings: accepted.
    same = ModelFingerprint("/abs/models/clip4clip-tiny/", "meanP", DIM, 224, 12, 2.0)
    assert len(VideoIndex.load(tmp_path / "idx", expect=same)) == 40


def test_missing_and_half_written_index_refused(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="does not exist") as err:
        VideoIndex.load(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)

    small_index().save(tmp_path / "idx")
    shutil.copytree(tmp_path / "idx", tmp_path / "idx.partial")
    with pytest.raises(IndexFormatError, match="unfinished build"):
        VideoIndex.load(tmp_path / "idx.partial")

    shutil.copytree(tmp_path / "idx", tmp_path / "nomanifest")
    (tmp_path / "nomanifest" / MANIFEST).unlink()
    with pytest.raises(IndexFormatError, match="no manifest.json"):
        VideoIndex.load(tmp_path / "nomanifest")

    shutil.copytree(tmp_path / "idx", tmp_path / "nocodes")
    data_files(tmp_path / "nocodes")["codes"].unlink()
    with pytest.raises(IndexFormatError, match="missing codes"):
        VideoIndex.load(tmp_path / "nocodes")

    manifest = json.loads((tmp_path / "idx" / MANIFEST).read_text())
    (tmp_path / "idx" / MANIFEST).write_text(json.dumps({**manifest, "count": 41}))
    with pytest.raises(IndexFormatError, match="41 videos"):
        VideoIndex.load(tmp_path / "idx")


def test_save_is_atomic_and_guards_existing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = small_index()
    index.save(tmp_path / "idx")
    with pytest.raises(IndexFormatError, match="overwrite"):
        index.save(tmp_path / "idx")
    small_index(n=7).save(tmp_path / "idx", overwrite=True)
    assert len(VideoIndex.load(tmp_path / "idx")) == 7
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(IndexFormatError, match="not an index"):
        index.save(tmp_path / "mine", overwrite=True)

    calls = {"n": 0}
    real_save = store.save_npy

    def failing_save(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] % 4 == 3:  # the third of the four arrays of each save
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(*args, **kwargs)  # type: ignore[arg-type]

    before = sorted(p.name for p in (tmp_path / "idx").iterdir())
    monkeypatch.setattr(store, "save_npy", failing_save)
    with pytest.raises(IndexFormatError, match="disk is full"):
        index.save(tmp_path / "new")
    with pytest.raises(IndexFormatError, match="disk is full"):
        index.save(tmp_path / "idx", overwrite=True)
    monkeypatch.undo()
    assert not (tmp_path / "new").exists()
    assert len(VideoIndex.load(tmp_path / "idx")) == 7  # the old index survived the failed replace
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == before  # and nothing of the new one
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["idx", "mine"]


def test_describe_returns_planted_caption_first() -> None:
    rng = np.random.default_rng(4)
    n = 30
    rows = [
        {"id": f"v{i}", "path": f"v{i}.mp4", "captions": [f"caption {i}", "a common caption"]}
        for i in range(n)
    ]
    caps = rng.normal(size=(2 * n, DIM)).astype(np.float32)
    caps[1::2] = caps[1]  # the shared caption text has one embedding everywhere
    index = VideoIndex.from_arrays(FP, rng.normal(size=(n, DIM)), rows, caps, np.repeat(np.arange(n), 2))
    planted = caps[2 * 17] + 0.1 * rng.normal(size=DIM)
    hits = index.describe(planted, k=5)
    assert hits[0].caption == "caption 17" and hits[0].video_id == "v17" and hits[0].rank == 1
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert len({h.caption for h in hits}) == 5  # "a common caption" listed at most once
    near_common = index.describe(caps[1], k=3)
    assert near_common[0].caption == "a common caption"
    assert sum(h.caption == "a common caption" for h in index.describe(caps[1], k=3, dedupe=False)) == 3


def test_import_precomputed_checks_shapes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(5)
    n, d = 50, 64
    emb = (3 * rng.normal(size=(n, d))).astype(np.float32)  # not normalised, like raw exports
    rows = [
        {"id": str(i), "path": f"https://example.com/{i}.mp4", "captions": [f"video {i}"]} for i in range(n)
    ]
    enc = FakeEncoder(ModelFingerprint("Searchium-ai/clip4clip-webvid150k", "meanP", d, 224, 12, 1.0))
    index = from_precomputed(emb, rows, np.packbits(emb > 0, axis=1), encode_texts=enc.encode_texts)
    assert index.fingerprint == enc.fingerprint and len(index.caption_video) == n
    np.testing.assert_allclose(np.linalg.norm(index.embeddings.astype(np.float32), axis=1), 1, atol=2e-3)
    index.save(tmp_path / "webvid")
    assert VideoIndex.load(tmp_path / "webvid", expect=enc.fingerprint).search(emb[3], k=1)[0][0].id == "3"

    with pytest.raises(IndexFormatError, match=r"\(50, 4\) uint8, expected \(50, 8\) uint8"):
        from_precomputed(emb, rows, np.zeros((n, 4), np.uint8))
    with pytest.raises(IndexFormatError, match="50 embeddings but 49 metadata rows"):
        from_precomputed(emb, rows[:-1])
    with pytest.raises(IndexFormatError, match="64-d"):
        from_precomputed(emb, rows, model=ModelFingerprint("x", "meanP", 512, 224, 12, 1.0))

    with caplog.at_level(logging.WARNING, logger="demo.index.precomputed"):
        flipped = from_precomputed(emb, rows, np.packbits(emb < 0, axis=1))
    assert "agree with sign(embeddings)" in caplog.text
    np.testing.assert_array_equal(flipped.codes, np.packbits(emb > 0, axis=1))


def test_items_from_folder_and_csv(tmp_path: Path) -> None:
    make_videos(tmp_path / "v", ["a_red-ball.mp4", "b.WEBM", "sub/c.gif", "sub/b.mp4", ".hidden.mp4"])
    (tmp_path / "v" / "notes.txt").write_text("not a video")
    (tmp_path / "caps.csv").write_text('path,caption\nb.WEBM,"first, with comma"\nb.WEBM,second\n')
    items = items_from_folder(tmp_path / "v", tmp_path / "caps.csv")
    assert [it.id for it in items] == ["a_red-ball", "b", "sub/b", "sub/c"]
    assert items[0].captions == ["a red ball"] and items[1].captions == ["first, with comma", "second"]
    assert default_caption("x/my-clip_01.mov") == "my clip 01"

    (tmp_path / "list.csv").write_text(
        "path,caption,split,attributes\n"
        'clips/x.mp4,a cat,train,"{""colour"": ""red""}"\n'
        "clips/x.mp4,a small cat,train,\n"
        "https://cdn.example/y.mp4,a dog,test,plain\n"
    )
    items = items_from_csv(tmp_path / "list.csv")
    assert [it.captions for it in items] == [["a cat", "a small cat"], ["a dog"]]
    assert items[0].path == str(tmp_path / "clips" / "x.mp4") and items[1].path == "https://cdn.example/y.mp4"
    assert items[0].metadata == {"split": "train", "attributes": {"colour": "red"}}
    assert items[1].row()["attributes"] == "plain"
    with pytest.raises(InputError, match="lacks column"):
        items_from_csv(tmp_path / "caps.csv", caption_column="name")


def test_build_skips_bad_files(tmp_path: Path) -> None:
    make_videos(tmp_path / "v", [f"clip_{i}.mp4" for i in range(5)] + ["bad_one.mp4"])
    enc = FakeEncoder()
    report = build_index(
        items_from_folder(tmp_path / "v"), tmp_path / "idx", enc, batch_size=2, progress=False
    )
    assert report.indexed == 5 and report.resumed_from == 0
    assert report.skipped == [
        (str(tmp_path / "v" / "bad_one.mp4"), f"cannot decode {tmp_path}/v/bad_one.mp4: moov atom not found")
    ]
    assert not (tmp_path / "idx.partial").exists()
    index = VideoIndex.load(tmp_path / "idx", expect=enc.fingerprint)
    assert index.ids == [f"clip_{i}" for i in range(5)]
    assert index.describe(enc.encode_texts(["clip 3"])[0], k=1)[0].caption == "clip 3"
    # A video's own embedding finds it first.
    frames, mask = enc.load_video(str(tmp_path / "v" / "clip_2.mp4"))
    q = enc.encode_frames(frames[None], mask[None])[0]
    assert index.search(q, k=1)[0][0].id == "clip_2"
    with pytest.raises(IndexFormatError, match="already holds an index"):
        build_index(items_from_folder(tmp_path / "v"), tmp_path / "idx", enc, progress=False)
    again = build_index(
        items_from_folder(tmp_path / "v"), tmp_path / "idx", enc, progress=False, overwrite=True
    )
    assert again.indexed == 5


def test_interrupted_build_resumes_without_reencoding(tmp_path: Path) -> None:
    names = [f"clip_{i}.mp4" for i in range(7)] + ["bad_x.mp4"]
    make_videos(tmp_path / "v", names)
    items = items_from_folder(tmp_path / "v")
    first = FakeEncoder(interrupt_after=2)
    with pytest.raises(KeyboardInterrupt):
        build_index(items, tmp_path / "idx", first, batch_size=2, progress=False)
    work = tmp_path / "idx.partial"
    assert len(list(work.glob("shard-*.json"))) == 2 and not (tmp_path / "idx").exists()
    with pytest.raises(IndexFormatError, match="does not exist|unfinished"):
        VideoIndex.load(tmp_path / "idx")

    with pytest.raises(IndexFormatError, match="work folder .* was started with"):
        build_index(items, tmp_path / "idx", FakeEncoder(ModelFingerprint("other", "meanP", DIM, 8, 4, 1.0)))

    second = FakeEncoder()
    report = build_index(items, tmp_path / "idx", second, batch_size=2, progress=False, num_workers=2)
    # Sorted order: bad_x, clip_0 | clip_1, clip_2 were the two finished batches.
    assert report.resumed_from == 3 and report.indexed == 7 and len(report.skipped) == 1
    assert sorted(second.attempted) == [f"clip_{i}.mp4" for i in range(3, 7)]  # nothing redone

    clean = FakeEncoder()
    build_index(items, tmp_path / "fresh", clean, batch_size=3, progress=False)
    np.testing.assert_array_equal(
        VideoIndex.load(tmp_path / "idx").embeddings, VideoIndex.load(tmp_path / "fresh").embeddings
    )
    assert not work.exists()


def test_build_where_every_file_fails_keeps_work_folder(tmp_path: Path) -> None:
    make_videos(tmp_path / "v", ["bad_1.mp4", "bad_2.mp4"])
    with pytest.raises(IndexFormatError, match="no video could be decoded"):
        build_index(items_from_folder(tmp_path / "v"), tmp_path / "idx", FakeEncoder(), progress=False)
    failed = (tmp_path / "idx.partial" / "failed.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in failed] == ["bad_1", "bad_2"]
    assert not (tmp_path / "idx").exists()
    with pytest.raises(InputError, match="unique"):
        build_index([VideoItem("a", "x.mp4"), VideoItem("a", "y.mp4")], tmp_path / "i2", FakeEncoder())


def test_sharded_binary_index_finds_the_same_nearest_codes() -> None:
    import faiss

    rng = np.random.default_rng(3)
    x = rng.standard_normal((5003, 64)).astype(np.float32)  # not a multiple of the shard count
    q = x[rng.integers(0, len(x), 20)] + 0.5 * rng.standard_normal((20, 64)).astype(np.float32)
    codes = binarize(x)
    flat, sharded = build_binary_index(codes, 64, shards=1), build_binary_index(codes, 64, shards=3)
    assert isinstance(sharded, faiss.IndexBinaryShards) and sharded.ntotal == len(x)
    qc = binarize(q)
    for r in (1, 50, 6000):  # 6000 > N: both pad with -1
        a, b = hamming_search(flat, q, r), hamming_search(sharded, q, r)
        assert ((a >= 0) == (b >= 0)).all() and b.max() < len(x)
        # Same Hamming distances rank by rank (ties may list different rows).
        dist = [np.unpackbits(codes[np.where(ids >= 0, ids, 0)] ^ qc[:, None], axis=2).sum(2) for ids in (a, b)]
        np.testing.assert_array_equal(np.where(a >= 0, dist[0], -1), np.where(b >= 0, dist[1], -1))
