"""Fault injection on the index: swaps under readers, kills mid-write, corrupt files, full disks,
damaged work folders, two builds at once, and files that failed before and were fixed since."""

from __future__ import annotations

import errno
import json
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from demo.cli import main
from demo.errors import IndexFormatError
from demo.files import atomic_write
from demo.index import store
from demo.index.build import build_index
from demo.index.format import MANIFEST
from demo.index.items import VideoItem
from demo.index.lock import writer_lock
from demo.index.store import data_files
from demo.index.video_index import VideoIndex
from demo.models.fingerprint import ModelFingerprint

DIM = 16
FP = ModelFingerprint("m", "meanP", DIM, 32, 4, 1.0)


def versioned(tag: float, n: int = 300) -> VideoIndex:
    """An index whose every part says which version it is: embeddings all point one way, the
    codes follow from them, and each row records ``tag``."""
    direction = np.full(DIM, tag, np.float32) * np.where(np.arange(DIM) % 2, 1, -1)
    rows = [{"id": str(i), "path": f"{i}.mp4", "captions": [f"v{tag}"], "tag": tag} for i in range(n)]
    return VideoIndex.from_arrays(FP, np.tile(direction, (n, 1)), rows, np.tile(direction, (n, 1)), np.arange(n))


def consistent(index: VideoIndex) -> bool:
    tag = index.metadata[0]["tag"]
    sign = np.sign(np.asarray(index.embeddings[:, 0], np.float32))
    return (all(r["tag"] == tag for r in index.metadata) and bool(np.all(sign == (-1 if tag > 0 else 1)))
            and bool(np.all(np.unpackbits(np.asarray(index.codes), axis=1)[:, 0] == (tag < 0))))


def test_readers_never_see_a_mixed_index_while_it_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    versions = [versioned(1.0), versioned(-1.0)]
    versions[0].save(target)
    stop, loads, bad = threading.Event(), [0], []

    def read() -> None:
        while not stop.is_set():
            try:
                index = VideoIndex.load(target)
            except IndexFormatError as err:  # pragma: no cover - the failure this test exists for
                bad.append(f"load failed: {err}")
                continue
            loads[0] += 1
            if not consistent(index):
                bad.append(f"mixed index: tag {index.metadata[0]['tag']}")

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    for i in range(60):
        versions[i % 2].save(target, overwrite=True)
    stop.set()
    for t in readers:
        t.join()
    assert loads[0] > 50 and not bad, bad[:3]
    names = sorted(p.name for p in target.iterdir())
    assert len(names) == 7 and len({n.split(".")[1] for n in names if n != MANIFEST}) == 1  # one write's files
    assert sorted(p.name for p in tmp_path.iterdir()) == [".idx.lock", "idx"]  # no .tmp-/.old- siblings


def test_a_write_killed_before_the_swap_leaves_the_old_index_and_no_leftovers(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "idx"
    versioned(1.0).save(target)
    real = store.atomic_write

    def killed(path: Path, data: bytes | str, **kwargs: object) -> Path:
        if Path(path).name == MANIFEST:
            raise KeyboardInterrupt  # the process dies after the new files, before the manifest swap
        return real(path, data)

    monkeypatch.setattr(store, "atomic_write", killed)
    with pytest.raises(KeyboardInterrupt):
        versioned(-1.0).save(target, overwrite=True)
    monkeypatch.undo()
    assert consistent(VideoIndex.load(target)) and VideoIndex.load(target).metadata[0]["tag"] == 1.0
    # A kill that skipped the cleanup leaves another write's files; the next writer removes them.
    (target / "embeddings.0123456789ab.npy").write_bytes(b"left by a killed writer")
    (tmp_path / ".idx.tmp-abc").mkdir()
    (tmp_path / ".idx.old-1234").mkdir()
    versioned(-1.0).save(target, overwrite=True)
    assert not (target / "embeddings.0123456789ab.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".idx.lock", "idx"]


def test_an_old_format_folder_still_loads_and_is_upgraded_on_save(tmp_path: Path) -> None:
    target = tmp_path / "old"
    index = versioned(1.0, n=20)
    target.mkdir()
    arrays = {"embeddings": index.embeddings, "codes": index.codes, "caption_embeddings": index.caption_embeddings,
              "caption_video": index.caption_video}
    for role, array in arrays.items():  # the version-1 layout, written by hand
        np.save(target / f"{role}.npy", array)
    (target / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in index.metadata))
    manifest = {**index.manifest(), "format_version": 1}
    (target / MANIFEST).write_text(json.dumps(manifest))
    loaded = VideoIndex.load(target)
    assert consistent(loaded) and len(loaded) == 20
    loaded.save(target, overwrite=True)
    assert not (target / "embeddings.npy").exists() and consistent(VideoIndex.load(target))


@pytest.mark.parametrize("damage, message", [
    ("manifest-garbage", "unreadable"),
    ("manifest-empty", "unreadable"),
    ("manifest-list", "JSON list"),
    ("embeddings-empty", "unreadable file"),
    ("row-without-id", "no 'id'"),
    ("nan-embedding", "NaN"),
    ("zeroed-codes", "sign codes disagree"),
    ("checksum", "does not match the checksum"),
])
def test_corrupt_files_are_refused_in_one_line(tmp_path: Path, damage: str, message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "idx"
    versioned(1.0, n=40).save(target)
    files = data_files(target)
    if damage not in ("manifest-garbage", "manifest-empty", "manifest-list", "checksum"):
        # the checks that do not rely on the checksums (files too large for one are checked so)
        manifest = json.loads((target / MANIFEST).read_text())
        atomic_write(target / MANIFEST, json.dumps({**manifest, "checksums": {}}))
    if damage.startswith("manifest"):
        text = {"manifest-garbage": "{not json", "manifest-empty": "", "manifest-list": "[1, 2]"}[damage]
        (target / MANIFEST).write_text(text)
    elif damage == "embeddings-empty":
        files["embeddings"].write_bytes(b"")
    elif damage == "row-without-id":
        table = pa.ipc.open_file(pa.memory_map(str(files["metadata"]))).read_all()
        ids = table.column("id").to_pylist()
        ids[7] = None
        table = table.set_column(0, "id", pa.array(ids, pa.string()))
        with pa.OSFile(str(files["metadata"]), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    elif damage == "checksum":
        caption_video = np.load(files["caption_video"])
        np.save(files["caption_video"], caption_video[::-1].copy())  # valid rows, in the wrong order
    elif damage == "nan-embedding":
        emb = np.load(files["embeddings"])
        emb[13, 2] = np.nan
        np.save(files["embeddings"], emb)
    else:
        np.save(files["codes"], np.zeros_like(np.load(files["codes"])))
    with pytest.raises(IndexFormatError, match=message):
        VideoIndex.load(target)
    assert main(["search", "a query", "--index", str(target), "--model", "nowhere"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


# --- building ----------------------------------------------------------------------------


class CountingEncoder:
    """A stand-in encoder: a video's embedding comes from its file's bytes; no model needed."""

    def __init__(self) -> None:
        self.fingerprint = FP
        self.loaded: list[str] = []

    def load_video(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        from demo.errors import VideoDecodeError

        data = Path(path).read_bytes()
        if not data.startswith(b"VIDEO"):
            raise VideoDecodeError(f"{path}: not a readable video")
        self.loaded.append(Path(path).name)
        seed = int.from_bytes(data[5:9].ljust(4, b"\0"), "little")
        return np.random.default_rng(seed).normal(size=(2, DIM)).astype(np.float32), np.ones(2, bool)

    def encode_frames(self, frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return frames.mean(axis=1)

    def encode_texts(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return np.ones((len(texts), DIM), np.float32)


def clips(folder: Path, n: int = 6) -> list[VideoItem]:
    folder.mkdir(exist_ok=True)
    items = []
    for i in range(n):
        path = folder / f"c{i}.mp4"
        path.write_bytes(b"VIDEO" + bytes([i + 1]) * 4)
        items.append(VideoItem(f"c{i}", str(path), [f"clip {i}"]))
    return items


def test_a_full_disk_keeps_what_was_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    items, out = clips(tmp_path / "v"), tmp_path / "idx"
    from demo.index import workfolder

    written = {"n": 0}

    def filling(path: Path, data: bytes | str, **kwargs: object) -> Path:
        if Path(path).name.startswith("shard-") and Path(path).suffix == ".npy":
            written["n"] += 1
            if written["n"] == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return atomic_write(path, data)

    monkeypatch.setattr(workfolder, "atomic_write", filling)
    with pytest.raises(IndexFormatError, match="disk is full"):
        build_index(items, out, CountingEncoder(), batch_size=2, progress=False)
    monkeypatch.undo()
    encoder = CountingEncoder()
    report = build_index(items, out, encoder, batch_size=2, progress=False)
    assert report.indexed == 6 and report.resumed_from == 4 and sorted(encoder.loaded) == ["c4.mp4", "c5.mp4"]


def test_a_damaged_work_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items, out = clips(tmp_path / "v"), tmp_path / "idx"
    work = tmp_path / "idx.partial"
    work.mkdir()
    (work / "fingerprint.json").write_text("{broken")
    (work / "shard-xyz.json").write_text("[]")
    with pytest.raises(IndexFormatError, match="damaged.*delete"):
        build_index(items, out, CountingEncoder(), progress=False)
    (work / "fingerprint.json").write_text(json.dumps(FP.to_dict()))
    (work / "shard-00000.json").write_text('{"not": "a list"}')
    np.save(work / "shard-00000.npy", np.zeros((2, DIM), np.float32))
    assert build_index(items, out, CountingEncoder(), progress=False).indexed == 6  # the bad shard is ignored


def test_a_second_build_on_the_same_out_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    items, out = clips(tmp_path / "v"), tmp_path / "idx"
    # A second process, as a second `index build` would be (the lock is per process).
    code = ("import sys\nfrom demo.errors import IndexFormatError\nfrom demo.index.lock import writer_lock\n"
            f"try:\n    writer_lock({str(out)!r}).__enter__()\n"
            "except IndexFormatError as e:\n    print(e)\n    sys.exit(3)\n")
    with writer_lock(out):  # held as a running build holds it
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert other.returncode == 3 and "being written by pid" in other.stdout, other
    assert build_index(items, out, CountingEncoder(), progress=False).indexed == 6  # free afterwards


def test_files_that_failed_are_tried_again_once_fixed(tmp_path: Path) -> None:
    items, out = clips(tmp_path / "v"), tmp_path / "idx"
    broken = Path(items[1].path)
    broken.write_bytes(b"not a video")

    class Interrupted(CountingEncoder):
        def encode_frames(self, frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
            if len(self.loaded) > 3:
                raise KeyboardInterrupt  # Ctrl-C after the first batches
            return super().encode_frames(frames, mask)

    with pytest.raises(KeyboardInterrupt):
        build_index(items, out, Interrupted(), batch_size=2, progress=False)
    # Fixed since: the resumed build decodes it (it used to be skipped forever).
    broken.write_bytes(b"VIDEO" + b"\x09" * 4)
    encoder = CountingEncoder()
    report = build_index(items, out, encoder, batch_size=2, progress=False)
    assert report.indexed == 6 and not report.skipped and "c1.mp4" in encoder.loaded


def test_an_unchanged_failure_is_listed_and_retried_on_request(tmp_path: Path) -> None:
    items, out = clips(tmp_path / "v"), tmp_path / "idx"
    Path(items[1].path).write_bytes(b"not a video")
    work = tmp_path / "idx.partial"
    with pytest.raises(IndexFormatError):  # every file broken: nothing indexed, the work folder kept
        build_index([items[1]], out, CountingEncoder(), progress=False)
    assert work.is_dir()
    encoder = CountingEncoder()
    report = build_index(items, out, encoder, progress=False)
    assert report.indexed == 5 and report.not_retried == report.skipped and "c1.mp4" not in encoder.loaded
    # The same again, asking for the retry: tried (and still broken), so not "not retried".
    with pytest.raises(IndexFormatError):
        build_index([items[1]], tmp_path / "again", CountingEncoder(), progress=False)
    report = build_index(items, tmp_path / "again", CountingEncoder(), progress=False, retry_failed=True)
    assert report.not_retried == [] and len(report.skipped) == 1
