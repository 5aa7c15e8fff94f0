"""The app serves a clip only while it is still the file the index was built from.

A folder index behind the running app: a clip swapped for a symlink to a file outside the folder,
or for a symlink to another clip inside it, is not served; an untouched clip is. Indexes built
from a relative folder, or from a CSV that lists a link to a clip elsewhere, play.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import moving_square_clip, tiny_xclip

from demo.app.service import AppConfig, DemoService
from demo.app.ui import build_demo, launch
from demo.cli import main
from demo.index.build import build_index
from demo.index.items import items_from_csv, items_from_folder
from demo.index.video_index import VideoIndex
from demo.models.encoders import Clip4ClipEncoder
from demo.search.media import MediaResolver

COLOURS = {"a": (255, 40, 40), "b": (40, 255, 40), "c": (40, 40, 255), "d": (255, 255, 40), "e": (40, 255, 255)}


def _clips(folder: Path) -> Path:
    for i, (name, colour) in enumerate(COLOURS.items()):
        moving_square_clip(folder / f"{name}.mp4", 1 if i % 2 else -1, colour=colour, frames=8)
    return folder


def _resolver(index: Path, cache: Path) -> MediaResolver:
    return MediaResolver(VideoIndex.load(index), cache)


@pytest.fixture(scope="module")
def folder_app(tmp_path_factory: pytest.TempPathFactory, tiny_clip4clip: Path) -> Iterator[tuple[Any, Path, Path]]:
    root = tmp_path_factory.mktemp("swaps")
    clips = _clips(root / "clips")
    (root / "private.txt").write_text("a private key\n")
    encoder = Clip4ClipEncoder.from_pretrained(tiny_clip4clip, device="cpu")
    build_index(items_from_folder(clips), root / "index", encoder, progress=False, model_path=str(tiny_clip4clip),
                media_root=clips)
    config = AppConfig(model=str(tiny_clip4clip), index=str(root / "index"), xclip=str(tiny_xclip(root / "xclip")),
                       device="cpu", cache_dir=str(root / "cache"))
    service = DemoService.load(config)
    demo = build_demo(service)
    launch(demo, service, server_name="127.0.0.1", quiet=True)
    yield demo, clips, root
    demo.close()


def test_untouched_clip_plays(folder_app: tuple[Any, Path, Path]) -> None:
    demo, clips, _ = folder_app
    response = httpx.get(f"{demo.local_url}media/a")
    assert response.status_code == 200 and response.content == (clips / "a.mp4").read_bytes()


def test_clip_swapped_for_a_link_outside_is_not_served(folder_app: tuple[Any, Path, Path]) -> None:
    demo, clips, root = folder_app
    (clips / "b.mp4").unlink()
    (clips / "b.mp4").symlink_to(root / "private.txt")
    assert httpx.get(f"{demo.local_url}media/b").status_code == 404
    (clips / "c.mp4").unlink()
    (clips / "c.mp4").symlink_to("/etc/passwd")
    assert httpx.get(f"{demo.local_url}media/c").status_code == 404


def test_clip_swapped_for_a_link_to_another_clip_is_not_served(folder_app: tuple[Any, Path, Path]) -> None:
    demo, clips, _ = folder_app
    (clips / "d.mp4").unlink()
    (clips / "d.mp4").symlink_to(clips / "e.mp4")
    assert httpx.get(f"{demo.local_url}media/d").status_code == 404
    assert httpx.get(f"{demo.local_url}media/e").status_code == 200


def test_index_and_clips_copied_elsewhere_still_play(tmp_path: Path, tiny_clip4clip: Path) -> None:
    """New inodes and times, the same bytes: the copy is the indexed file."""
    clips = _clips(tmp_path / "v" / "clips")
    encoder = Clip4ClipEncoder.from_pretrained(tiny_clip4clip, device="cpu")
    build_index(items_from_folder(clips), tmp_path / "v" / "index", encoder, progress=False, media_root=clips)
    shutil.copytree(tmp_path / "v", tmp_path / "w")  # copytree keeps times; the copies have new inodes
    for f in (tmp_path / "w" / "clips").iterdir():
        os.utime(f, (1, 1))
    media = _resolver(tmp_path / "w" / "index", tmp_path / "cache")
    assert media.local_file("a") == (tmp_path / "w" / "clips" / "a.mp4").resolve()
    shutil.copy(tmp_path / "w" / "clips" / "b.mp4", tmp_path / "w" / "clips" / "a.mp4")  # another clip's bytes
    assert media.local_file("a") is None


def test_relative_folder_build_plays(tmp_path: Path, tiny_clip4clip: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``cd X && python -m demo index build videos --out idx``, then the app run from elsewhere;
    the files that are not videos are listed with the skipped files."""
    _clips(tmp_path / "videos")
    (tmp_path / "videos" / "cover.png").write_bytes(b"\x89PNG")
    (tmp_path / "videos" / "music.mp3").write_bytes(b"ID3")
    monkeypatch.chdir(tmp_path)
    assert main(["index", "build", "videos", "--out", "idx", "--model", str(tiny_clip4clip)]) == 0
    out = capsys.readouterr().out
    assert "skipped 2 file(s) that are not videos" in out
    assert "videos/cover.png" in out and "videos/music.mp3" in out
    monkeypatch.chdir(tmp_path / "videos")
    media = _resolver(tmp_path / "idx", tmp_path / "cache")
    assert media.local_file("a") == (tmp_path / "videos" / "a.mp4").resolve()


def test_csv_listed_link_to_a_clip_elsewhere_plays(tmp_path: Path, tiny_clip4clip: Path) -> None:
    """A CSV's listed path is resolved at build and recorded: a link to a clip outside the CSV's
    folder plays while it still leads to that clip; retargeted, it does not."""
    _clips(tmp_path / "store")
    listing = tmp_path / "listing"
    listing.mkdir()
    (listing / "linked.mp4").symlink_to(tmp_path / "store" / "a.mp4")
    moving_square_clip(listing / "own.mp4", frames=8)
    with (listing / "clips.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("path", "caption"), ("linked.mp4", "a red square"), ("own.mp4", "a square")])
    encoder = Clip4ClipEncoder.from_pretrained(tiny_clip4clip, device="cpu")
    build_index(items_from_csv(listing / "clips.csv"), tmp_path / "index", encoder, progress=False,
                media_root=listing)
    media = _resolver(tmp_path / "index", tmp_path / "cache")
    assert media.local_file("linked.mp4") == (tmp_path / "store" / "a.mp4").resolve()
    assert media.local_file("own.mp4") == (listing / "own.mp4").resolve()
    (listing / "linked.mp4").unlink()
    (listing / "linked.mp4").symlink_to(tmp_path / "store" / "b.mp4")
    assert media.local_file("linked.mp4") is None


def test_index_without_the_record_still_checks_the_folder(tmp_path: Path, tiny_clip4clip: Path) -> None:
    """An index built before the record (rows of absolute paths, no ``media`` entry): a link that
    leaves the folder is refused; the clips themselves play."""
    clips = _clips(tmp_path / "clips")
    encoder = Clip4ClipEncoder.from_pretrained(tiny_clip4clip, device="cpu")
    items = [it.__class__(it.id, str(Path(it.path).resolve()), it.captions) for it in items_from_folder(clips)]
    index = build_index(items, tmp_path / "index", encoder, progress=False, media_root=clips)
    assert index.indexed == len(COLOURS)
    loaded = VideoIndex.load(tmp_path / "index")
    for row in loaded.metadata:
        row.pop("media", None)
    media = MediaResolver(loaded, tmp_path / "cache")
    assert media.local_file("a") == (clips / "a.mp4").resolve()
    (clips / "b.mp4").unlink()
    (clips / "b.mp4").symlink_to(tmp_path / "outside.mp4")
    shutil.copy(clips / "a.mp4", tmp_path / "outside.mp4")
    assert media.local_file("b") is None
