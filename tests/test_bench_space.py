"""``python -m demo bench space``: its synthetic files, its memory reading, its targets and its table."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from demo.bench.importing import write_searchium_layout
from demo.bench.space import anon_mb, format_space_markdown, space_targets
from demo.cli import main


def test_the_searchium_layout_can_be_clustered_like_clip_embeddings(tmp_path: Path) -> None:
    files = write_searchium_layout(tmp_path / "s", 3000, clusters=20, block=1000)
    x = np.load(files["embeddings"])
    assert x.shape == (3000, 512) and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-4)
    assert np.array_equal(np.load(files["binary"]), np.packbits(x > 0, axis=1))
    assert files["metadata"].read_text().splitlines()[0].startswith("videoid,contentUrl,name")
    nearest = np.sort(x[:200] @ x.T, axis=1)[:, -2]  # each row's nearest other row
    random = np.load(write_searchium_layout(tmp_path / "r", 3000, block=1000)["embeddings"])
    assert np.median(nearest) > 0.6 > np.median(np.sort(random[:200] @ random.T, axis=1)[:, -2])


def test_anonymous_memory_is_read_from_proc() -> None:
    assert anon_mb(os.getpid()) > 10


def test_targets_follow_the_default_measured_in_the_same_run() -> None:
    default = {"ready_s": 10.0, "anon_mb": 500.0, "first_search_ms": 50.0, "median_search_ms": 20.0}
    app = {"ready_s": 17.0, "anon_mb": 950.0, "first_search_ms": 320.0, "median_search_ms": 39.0}
    rows = space_targets({"rows": 1_500_000, "app": app, "default": default})
    assert [(t["target"].split(" at ")[0], t["goal"], t["holds"]) for t in rows] == [
        ("ready", "<= 18.0 s", True), ("anon", "<= 900.0 MiB", False), ("first search", "<= 300.0 ms", False),
        ("median search", "<= 40.0 ms", True)]
    big = space_targets({"rows": 5_400_000, "app": app, "default": default})
    assert [t["holds"] for t in big] == [True, True] and big[0]["goal"] == "<= 20.0 s"
    out = {"default": {**default, "command": "python app.py"},
           "results": [{"rows": 1_500_000, "import": {"seconds": 30.0, "peak_rss_mib": 480.0},
                        "load": {"load_s": 0.4, "anon_mb": 60.0}, "app": app, "targets": rows}]}
    text = format_space_markdown(out, {"command": "python -m demo bench space --rows 1500000", "date": "today"})
    assert "| 1,500,000 rows | 30 s (peak 480 MiB) | 0.40 s, RssAnon 60 MiB | 17.0 s |" in text
    assert "| anon at 1,500,000 rows | <= 900.0 MiB | 950.0 MiB | **no** |" in text


def test_the_bench_command_takes_the_sizes_of_the_space_section(monkeypatch, tmp_path: Path) -> None:
    seen = {}

    def fake(workdir: Path, rows: tuple[int, ...]) -> dict[str, object]:
        seen["rows"] = rows
        return {"default": {}, "results": []}

    monkeypatch.setattr("demo.bench.space.bench_space", fake)
    assert main(["bench", "space", "--rows", "1000", "2000", "--out", str(tmp_path)]) == 0
    assert seen["rows"] == (1000, 2000) and (tmp_path / "bench-space.json").is_file()
