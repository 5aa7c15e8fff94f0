"""``index fetch`` against a hub repo whose head deleted its data, as the Searchium Space's did.

The stand-in Space (tests/test_hub.py's ``webvid_hub``) has today's history: an old commit naming
the 1.5M set's files ``..._visual_features_database[_packed].npy``, the commit the webvid preset
pins holding both sets under their current names, and a head with only the Space's app files
whose tree listing fails. Everything goes through the real ``huggingface_hub`` client.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from demo.cli import main
from demo.errors import InputError
from demo.index.fetch import fetch_preset, fetched_from
from demo.index.history import locate
from demo.index.video_index import VideoIndex
from demo.presets import INDEX_SET_ENV, WEBVID, resolve_preset
from tests import test_hub
from tests.test_hub import HEAD_FILES, N_LARGE, N_OLD, N_SMALL, SPACE, WebvidHub

# test_hub's fixtures: the stand-in hub (built once for this module) and the client pointed at it.
webvid_hub = test_hub.webvid_hub
hub_env = test_hub.hub_env


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _commits_listed(hub: WebvidHub) -> list[str]:
    return [p for m, p, _ in hub.hub.requests if m == "GET" and "/commits/" in p]


def test_the_pinned_commit_is_used_without_walking_the_history(webvid_hub: WebvidHub, hub_env: Path) -> None:
    found = locate(SPACE, index_set=WEBVID.chosen_set, start=WEBVID.index_revision, dim=16)
    assert found.revision == webvid_hub.middle and found.files.embeddings.rows == N_SMALL
    assert found.describe() == f"WebVid 1.5M from {SPACE} @ {webvid_hub.middle[:7]}"
    assert not _commits_listed(webvid_hub)


def test_without_a_pin_the_walk_skips_the_failing_head_and_finds_the_middle_commit(
        webvid_hub: WebvidHub, hub_env: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    unpinned = replace(WEBVID, index_revision=None)
    with caplog.at_level("INFO"):
        report = fetch_preset(unpinned, tmp_path / "index", captions="none")
    assert report.videos == N_SMALL
    source = _manifest(tmp_path / "index")["source"]
    assert (source["revision"], source["set"]) == (webvid_hub.middle, "v1")
    assert _commits_listed(webvid_hub)  # the history was listed ...
    skipped = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "skipping revision" in
               r.getMessage()]
    assert len(skipped) == 1 and webvid_hub.head[:12] in skipped[0]  # ... and main's failing listing skipped


def test_revision_of_the_old_commit_finds_the_old_file_names(webvid_hub: WebvidHub, hub_env: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "old"
    assert main(["index", "fetch", "webvid", "--revision", webvid_hub.old[:7], "--out", str(out),
                 "--captions", "none"]) == 0
    printed = capsys.readouterr().out
    assert f"imported {N_OLD} videos" in printed and f"@ {webvid_hub.old[:7]}" in printed
    source = _manifest(out)["source"]
    assert source["revision"] == webvid_hub.old  # the short id, resolved to the commit
    assert source["files"] == ["data/dataset_v1_visual_features_database.npy",
                               "data/dataset_v1_visual_features_database_packed.npy", "data/dataset_v1.csv"]
    assert len(VideoIndex.load(out)) == N_OLD
    # An explicit revision is taken as it is: main's failing listing is one line, not a walk.
    assert main(["index", "fetch", "webvid", "--revision", "main", "--out", str(tmp_path / "main")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"cannot list {SPACE} at main" in err


def test_a_history_without_a_set_says_so_in_one_line(webvid_hub: WebvidHub, hub_env: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    repo = "someone/no-data"
    buffer = io.BytesIO()
    np.save(buffer, np.ones((4, 16), np.float32))
    webvid_hub.hub.add_repo("space", repo, HEAD_FILES)
    # Vectors and a table but no packed codes: not a complete set either.
    webvid_hub.hub.add_commit("space", repo, {**HEAD_FILES, "data/dataset_v1_visual_features.npy": buffer.getvalue(),
                                              "data/dataset_v1.csv": b"videoid,contentUrl,name\n1,a.mp4,a\n"})
    webvid_hub.hub.add_commit("space", repo, HEAD_FILES, "Delete data")
    out = tmp_path / "none"
    assert main(["index", "fetch", "webvid", "--index-repo", f"spaces/{repo}", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"no revision of spaces/{repo} holds a complete WebVid 1.5M set" in err
    assert "tried 4 revision(s)" in err  # the pin (unknown there), then its three commits
    assert "python -m demo index build" in err and "python -m demo index import" in err
    assert not out.exists()


def test_the_half_set_by_flag_into_its_own_folder_shown_in_the_header(
        webvid_hub: WebvidHub, hub_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from demo.app.header import header_html
    from demo.app.service import DemoService
    from demo.search.searcher import open_searcher

    monkeypatch.setenv(INDEX_SET_ENV, "half")  # what the app reads; the CLI flag says the same
    preset = resolve_preset("webvid")
    assert preset.chosen_set is not None and preset.chosen_set.name == "half"
    assert Path(preset.index or "").name == "index-webvid-half"  # beside index-webvid, never over it
    out = tmp_path / "half"
    assert main(["index", "fetch", "webvid", "--set", "half", "--out", str(out), "--captions", "none"]) == 0
    assert f"imported {N_LARGE} videos" in capsys.readouterr().out
    source = _manifest(out)["source"]
    assert (source["set"], source["revision"]) == ("half", webvid_hub.middle)
    assert source["files"][0] == "new_data/video_half_dataset_visual_features.npy"
    service = DemoService(open_searcher(resolve_preset("webvid", index=str(out)), device="cpu"), None, preset)
    shown = f"WebVid 5.4M (half) from {SPACE} @ {webvid_hub.middle[:7]}"
    assert service.info()["index_source"] == shown == fetched_from(VideoIndex.load(out).info)
    assert shown in header_html(service.info(), None, "cpu")


def test_unknown_sets_are_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match=r"no index set 'quarter'; choose one of \['v1', 'half'\]"):
        resolve_preset("webvid", index_set="quarter")
    with pytest.raises(InputError, match="names no hub sets"):
        resolve_preset("embedded", index_set="half")
    assert main(["index", "fetch", "webvid", "--set", "quarter"]) == 2
    assert "no index set 'quarter'" in capsys.readouterr().err
