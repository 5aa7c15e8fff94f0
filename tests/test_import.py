"""The streamed import (``index import``): block-by-block, refusals, codes, repeated ids, atomicity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from demo.errors import IndexFormatError
from demo.index.precomputed import import_precomputed
from demo.index.stream import NpyRows
from demo.index.video_index import VideoIndex
from demo.models.fingerprint import ModelFingerprint

FP = ModelFingerprint("some/model", "meanP", 16, 224, 0, 1.0, "every-second", "pil-bicubic")


def files(tmp_path: Path, n: int = 50, seed: int = 0) -> tuple[Path, Path, Path, np.ndarray]:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 16)).astype(np.float32) * 3
    np.save(tmp_path / "emb.npy", emb)
    np.save(tmp_path / "codes.npy", np.packbits(emb > 0, axis=1))
    rows = [f"{i},https://example.invalid/{i}.mp4,caption number {i},dir{i % 3}" for i in range(n)]
    (tmp_path / "meta.csv").write_text("videoid,contentUrl,name,page_dir\n" + "\n".join(rows) + "\n")
    return tmp_path / "emb.npy", tmp_path / "codes.npy", tmp_path / "meta.csv", emb


def test_import_streams_blocks_into_an_index_that_searches(tmp_path: Path) -> None:
    emb_path, codes, meta, emb = files(tmp_path)
    report = import_precomputed(emb_path, meta, tmp_path / "out", FP, codes, block_rows=7, progress=False)
    assert (report.videos, report.captions, report.codes, report.renamed) == (50, 0, "given", 0)
    index = VideoIndex.load(tmp_path / "out")
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(index.embeddings, np.float32), unit, atol=1e-3)
    assert index.metadata[7] == {"id": "7", "path": "https://example.invalid/7.mp4", "captions": ["caption number 7"],
                                 "page_dir": "dir1"}
    assert index.search(unit[12], k=1)[0][0].id == "12"
    assert index.manifest()["video_to_text"] == "nearest-videos"
    assert NpyRows(emb_path).rows(48, 60).shape == (2, 16)


def test_captions_are_embedded_when_an_encoder_is_given(tmp_path: Path) -> None:
    emb_path, codes, meta, emb = files(tmp_path, n=9)
    calls = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return np.stack([emb[int(t.rsplit(" ", 1)[1])] for t in texts])

    report = import_precomputed(emb_path, meta, tmp_path / "out", FP, encode_texts=encode, text_batch=4,
                                progress=False)
    assert report.captions == 9 and report.codes == "computed" and calls == [4, 4, 1]
    index = VideoIndex.load(tmp_path / "out")
    assert index.describe(emb[5], k=1)[0].caption == "caption number 5"
    assert index.manifest()["video_to_text"] == "captions"


def test_wrong_codes_are_recomputed_and_repeated_ids_renamed(tmp_path: Path) -> None:
    emb_path, _, meta, emb = files(tmp_path, n=6)
    np.save(tmp_path / "flipped.npy", np.packbits(emb < 0, axis=1))
    meta.write_text(meta.read_text().replace("\n3,", "\n2,"))
    report = import_precomputed(emb_path, meta, tmp_path / "out", FP, tmp_path / "flipped.npy", progress=False)
    assert report.codes == "computed" and report.renamed == 1
    index = VideoIndex.load(tmp_path / "out")
    assert [r["id"] for r in index.metadata][2:4] == ["2", "2#2"]


@pytest.mark.parametrize("problem", ["rows", "nan", "codes_shape", "one_d"])
def test_refusals_leave_no_index_behind(tmp_path: Path, problem: str) -> None:
    emb_path, codes, meta, emb = files(tmp_path, n=8)
    if problem == "rows":
        meta.write_text("\n".join(meta.read_text().splitlines()[:-1]) + "\n")
    elif problem == "nan":
        emb[5, 3] = np.nan
        np.save(emb_path, emb)
    elif problem == "codes_shape":
        np.save(codes, np.zeros((8, 3), np.uint8))
    else:
        np.save(emb_path, emb[:, 0])
    with pytest.raises(IndexFormatError, match="metadata rows|row 5|expected \\(8, 2\\)|float \\(N, D\\)"):
        import_precomputed(emb_path, meta, tmp_path / "out", FP, codes, progress=False)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]
