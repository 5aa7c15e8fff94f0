"""Format 3 on disk: the first stage written with the index and memory-mapped on load (never
trained there), the metadata table read a row at a time, older indexes upgraded once, corrupt
caption embeddings refused, and a full disk at the final write said as such."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from demo.errors import IndexFormatError
from demo.index import ivf, table, tuning, upgrade
from demo.index.binary import binarize, l2_normalize
from demo.index.format import MANIFEST, write_id_of
from demo.index.precomputed import import_precomputed
from demo.index.store import data_files
from demo.index.table import MetadataTable
from demo.index.video_index import VideoIndex
from demo.models.fingerprint import ModelFingerprint

DIM = 32
FP = ModelFingerprint("m", "meanP", DIM, 32, 8, 1.0)
ROOT = Path(__file__).resolve().parents[1]


def clustered(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit rows around 100 centres sharing one mean direction, and 64 queries near rows."""
    rng = np.random.default_rng(seed)
    mean = 2.0 * l2_normalize(rng.standard_normal(DIM))
    centres = rng.standard_normal((100, DIM))
    x = l2_normalize(mean + centres[rng.integers(0, 100, n)] + 0.6 * rng.standard_normal((n, DIM)))
    return x, l2_normalize(x[:64] + 0.2 * rng.standard_normal((64, DIM)))


def rows(n: int) -> list[dict[str, object]]:
    return [{"id": f"v{i:05d}", "path": f"{i}.mp4", "captions": [f"caption {i}", f"second {i}"], "start": i / 2,
             "media": {"size": i, "mtime": 1.5, "inode": 10 + i}} for i in range(n)]


def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the first stage was trained on load")

    monkeypatch.setattr(ivf, "train_ivf", refuse)
    monkeypatch.setattr(tuning, "train_ivf", refuse)


@pytest.fixture
def small_ivf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Indexes of 1,000 rows and more get an IVF-PQ (instead of 200,000)."""
    monkeypatch.setattr(ivf, "IVF_MIN_ROWS", 1000)


def test_the_ivf_is_written_with_the_index_and_mapped_on_load(tmp_path: Path, small_ivf: None,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    x, q = clustered(6000)
    caps = np.repeat(x, 2, axis=0)
    VideoIndex.from_arrays(FP, x, rows(len(x)), caps, np.repeat(np.arange(len(x)), 2)).save(tmp_path / "i")
    manifest = json.loads((tmp_path / "i" / MANIFEST).read_text())
    stage = manifest["first_stage"]
    assert stage["kind"] == "ivf-pq" and stage["tuned"]["recall@10"] >= 0.95 and stage["nprobe"] >= 1
    name = manifest["files"]["ivf"]
    assert name.endswith(".faiss") and write_id_of(name) == manifest["write_id"] == write_id_of(
        manifest["files"]["embeddings"])
    no_training(monkeypatch)
    loaded = VideoIndex.load(tmp_path / "i")
    lists = faiss.downcast_InvertedLists(loaded.ivf().invlists)
    assert isinstance(lists, faiss.OnDiskInvertedLists)  # mapped from the file, not copied
    found = loaded.search_rows(q, 10)[1]
    exact = loaded.search_rows(q, 10, exact=True)[1]
    assert np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(found, exact, strict=True)]) >= 0.95
    assert loaded.caption_text(2 * 500 + 1) == "second 500"
    loaded.save(tmp_path / "copy")  # a re-save copies the file as it is
    assert np.array_equal(VideoIndex.load(tmp_path / "copy").search_rows(q, 10)[1], found)


def test_import_writes_the_first_stage(tmp_path: Path, small_ivf: None, monkeypatch: pytest.MonkeyPatch) -> None:
    x, q = clustered(3000)
    np.save(tmp_path / "v.npy", x.astype(np.float32))
    np.save(tmp_path / "b.npy", binarize(x))
    (tmp_path / "m.csv").write_text("videoid,contentUrl,name\n" + "".join(
        f"{i},https://example.invalid/{i}.mp4,clip {i}\n" for i in range(len(x))))
    import_precomputed(tmp_path / "v.npy", tmp_path / "m.csv", tmp_path / "i", FP, tmp_path / "b.npy", progress=False)
    files = data_files(tmp_path / "i")
    assert files["ivf"].is_file() and files["metadata"].suffix == ".arrow"
    no_training(monkeypatch)
    index = VideoIndex.load(tmp_path / "i")
    assert index.first_stage.kind == "ivf-pq" and index.search(x[5], k=1)[0][0].id == "5"


def test_metadata_is_read_a_row_at_a_time_and_keeps_every_key(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    x, q = clustered(40_000)
    given = rows(len(x))
    VideoIndex.from_arrays(FP, x, given).save(tmp_path / "i")
    made = {"rows": 0}
    real = table.row_dict

    def counting(*args: object) -> dict[str, object]:
        made["rows"] += 1
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(table, "row_dict", counting)
    index = VideoIndex.load(tmp_path / "i")
    assert isinstance(index.metadata, MetadataTable) and made["rows"] == 0  # nothing per row at load
    assert index.metadata[12345] == given[12345] and index.metadata[-1] == given[-1]
    assert "v39999" in index.ids and "nope" not in index.ids and index.ids[7] == "v00007"
    assert index.row_of("v20001") == 20001 and index.row_of("v2") is None
    np.testing.assert_allclose(index.vector("v00003"), x[3], atol=2e-3)
    hits = index.search(x[77], k=1)[0]
    # the row keeps its file record; a hit leaves it out (it names the file's resolved path)
    assert index.metadata[77]["media"] == {"size": 77, "mtime": 1.5, "inode": 87}
    assert hits[0].id == "v00077" and "media" not in hits[0].metadata
    assert made["rows"] < 20  # a hit reads its row, nothing else
    assert list(index.metadata)[:2] == given[:2] and len(index.metadata) == len(given)


def v2_folder(target: Path, x: np.ndarray, keep: list[dict[str, object]]) -> None:
    """An index as version 2 wrote it: JSON-lines metadata, no first stage file."""
    target.mkdir()
    wid = "0123456789ab"
    emb = l2_normalize(x).astype(np.float16)
    arrays = {"embeddings": emb, "codes": binarize(emb), "caption_embeddings": np.zeros((0, DIM), np.float16),
              "caption_video": np.zeros(0, np.int64)}
    for role, array in arrays.items():
        np.save(target / f"{role}.{wid}.npy", array)
    (target / f"metadata.{wid}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in keep))
    manifest = {**VideoIndex.from_arrays(FP, x[:1], keep[:1]).manifest(), "format_version": 2, "write_id": wid,
                "count": len(x), "captions": 0}
    (target / MANIFEST).write_text(json.dumps(manifest))


def test_an_older_large_index_is_upgraded_once_on_load(tmp_path: Path, small_ivf: None,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(upgrade, "UPGRADE_MIN_ROWS", 2000)
    x, q = clustered(3000)
    given = rows(len(x))
    v2_folder(tmp_path / "old", x, given)
    with caplog.at_level(logging.INFO):
        index = VideoIndex.load(tmp_path / "old")
    assert "building them once" in caplog.text
    manifest = json.loads((tmp_path / "old" / MANIFEST).read_text())
    assert manifest["format_version"] == 3 and manifest["first_stage"]["kind"] == "ivf-pq"
    assert sorted(p.suffix for p in (tmp_path / "old").iterdir()) == [".arrow", ".faiss", ".json", *[".npy"] * 5]
    assert isinstance(index.metadata, MetadataTable) and index.metadata[5] == given[5]
    no_training(monkeypatch)
    again = VideoIndex.load(tmp_path / "old")
    assert np.array_equal(again.search_rows(q, 10)[1], index.search_rows(q, 10)[1])


def test_an_older_small_index_loads_as_before_and_is_left_alone(tmp_path: Path) -> None:
    x, _ = clustered(300)
    v2_folder(tmp_path / "old", x, rows(len(x)))
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "old").iterdir()}
    index = VideoIndex.load(tmp_path / "old")
    assert index.metadata[3]["media"]["inode"] == 13 and index.first_stage.kind == "binary-flat"
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "old").iterdir()} == before


# --- corrupt caption embeddings (random bytes over the data, header kept) ------------------------


def scrambled(tmp_path: Path, checksums: bool = True) -> Path:
    x, _ = clustered(200)
    VideoIndex.from_arrays(FP, x, rows(len(x)), np.repeat(x, 2, axis=0), np.repeat(np.arange(len(x)), 2)).save(
        tmp_path / "i")
    path = data_files(tmp_path / "i")["caption_embeddings"]
    data = bytearray(path.read_bytes())
    header = len(data) - 400 * DIM * 2
    data[header:] = np.random.default_rng(3).bytes(len(data) - header)
    path.write_bytes(bytes(data))
    if not checksums:
        manifest = json.loads((tmp_path / "i" / MANIFEST).read_text())
        (tmp_path / "i" / MANIFEST).write_text(json.dumps({**manifest, "checksums": {}}))
    return path


@pytest.mark.parametrize("checksums", [True, False])
def test_corrupt_caption_embeddings_are_refused_naming_the_file(tmp_path: Path, checksums: bool) -> None:
    path = scrambled(tmp_path, checksums)
    with pytest.raises(IndexFormatError, match=path.name):
        VideoIndex.load(tmp_path / "i")


def test_corrupt_rows_outside_the_load_sample_are_refused_when_scored(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from demo.index import format as layout

    path = scrambled(tmp_path, checksums=False)
    monkeypatch.setattr(layout, "CHECK_VALUES", 0)  # a "large" index: rows are sampled on load ...
    monkeypatch.setattr(layout, "CHECK_ROWS", 1)  # ... here only the first row, which is kept
    data = np.load(path)
    data[0] = l2_normalize(np.ones(DIM)).astype(np.float16)
    np.save(path, data)
    index = VideoIndex.load(tmp_path / "i")
    with pytest.raises(IndexFormatError, match=path.name):
        index.describe(np.ones(DIM, np.float32), k=3)


# --- a full disk at the final write ------------------------------------------------------------

_FULL_DISK = """
import json, sys
import numpy as np
from demo.errors import IndexFormatError
from demo.index.video_index import VideoIndex
from demo.models.fingerprint import ModelFingerprint
fp = ModelFingerprint("m", "meanP", 32, 32, 8, 1.0)
def index(n, seed):
    x = np.random.default_rng(seed).standard_normal((n, 32))
    return VideoIndex.from_arrays(fp, x, [{"id": str(i), "path": f"{i}.mp4"} for i in range(n)])
target = sys.argv[1] + "/idx"
index(50, 0).save(target)
try:
    index(60000, 1).save(target, overwrite=True)
except IndexFormatError as err:
    print(json.dumps({"error": str(err), "count": len(VideoIndex.load(target))}))
"""


def test_a_full_disk_at_the_final_write_says_so(tmp_path: Path) -> None:
    """A real small file system (a tmpfs in a private mount namespace) fills up while the index's
    arrays are written: numpy's own writer used to report a short write without its errno."""
    if shutil.which("unshare") is None or sys.platform != "linux":
        pytest.skip("needs Linux and unshare")
    script = tmp_path / "full.py"
    script.write_text(textwrap.dedent(_FULL_DISK))
    mount = tmp_path / "small"
    mount.mkdir()
    shell = f"mount -t tmpfs -o size=2m none {mount} && {sys.executable} {script} {mount}"
    done = subprocess.run(["unshare", "-r", "-m", "sh", "-c", shell], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    if "mount" in done.stderr and done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()[:100]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "disk is full" in result["error"] and "requested" not in result["error"]
    assert result["count"] == 50  # the old index is intact
