"""The Ray engine's pieces that run without Ray: the batches it encodes, its decode function, the
URL reader, and the one-line errors when Ray is missing or --address is misplaced."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from demo.cli import main
from demo.errors import DemoError, VideoDecodeError
from demo.index.engines.ray_engine import build_index_ray, groups
from demo.index.engines.workers import Sampling, decode_group
from demo.index.items import VideoItem
from demo.index.remote import fetch, is_url, local_copy
from demo.presets import resolve_preset


def test_groups_are_runs_of_the_whole_list_less_what_is_done() -> None:
    items = [VideoItem(str(i), f"{i}.mp4") for i in range(7)]
    assert [[it.id for it in g] for g in groups(items, items, 3)] == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    todo = [it for it in items if it.id not in ("1", "3", "4", "5")]
    assert [[it.id for it in g] for g in groups(items, todo, 3)] == [["0", "2"], ["6"]]


def test_decode_group_pads_slots_and_reports_bad_files(tmp_path: Path, clip_folder: Path) -> None:
    clip = sorted(clip_folder.glob("*.mp4"))[0]
    (tmp_path / "bad.mp4").write_bytes(b"nope")
    row = {"ids": json.dumps(["a", "b"]), "paths": json.dumps([str(clip), str(tmp_path / "bad.mp4")])}
    out = decode_group(row, Sampling(image_size=32, sample_fps=4.0, max_frames=6), slots=3)
    assert out["frames"].shape == (3, 6, 3, 32, 32) and out["mask"].shape == (3, 6)
    errors = json.loads(out["errors"])
    assert errors[0] == "" and "bad.mp4" in errors[1] and len(errors) == 2
    assert out["mask"][0].any() and not out["mask"][1:].any() and not np.abs(out["frames"][1:]).any()


def test_urls_only_http_and_a_local_path_passes_through(tmp_path: Path) -> None:
    assert is_url("https://a/b.mp4") and not is_url("b.mp4")
    with pytest.raises(VideoDecodeError, match="only http"):
        fetch("file:///etc/passwd", tmp_path / "x")
    with local_copy("clips/a.mp4") as path:
        assert path == "clips/a.mp4"


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(DemoError, match="requirements-scale.txt"):
        build_index_ray([VideoItem("a", "a.mp4")], tmp_path / "i", resolve_preset(model="some-model"))


def test_address_needs_the_ray_engine(clip_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", "build", str(clip_folder), "--out", str(tmp_path / "i"), "--address", "auto"]) == 2
    assert "--engine ray" in capsys.readouterr().err
