"""The two benchmark sections that run only when named: `bench scale` (IVF-PQ at ten million,
here its --quick size) and `bench engines` (local and Ray engines, streamed merge). No timing
assertions: every row is there, numbers are sane, and neither quick run touches BENCHMARKS.md."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from demo.bench.runner import EXTRA_SECTIONS, SECTIONS, BenchConfig
from demo.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_scale_and_engines_sections(tmp_path: Path) -> None:
    before = (ROOT / "BENCHMARKS.md").read_text()
    assert main(["bench", "scale", "engines", "--quick", "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "bench.json").read_text())
    assert out["meta"]["command"] == "python -m demo bench --quick --only scale engines"
    for r in out["scale"]["results"]:
        assert r["n"] == 50_000 and r["first_stage"]["kind"] == "ivf-pq"
        assert {"numpy", "flat", "default"} <= set(r["methods"])
        default = r["methods"]["default"]
        assert default["one"]["p50_ms"] > 0 and default["build_s"] > 0 and 0.9 <= default["recall@1"] <= 1.0
        for s in r["sweep"]:
            assert list(s["recall@1"].values()) == sorted(s["recall@1"].values())  # deeper finds no less
    targets = [t["target"] for t in out["targets"]]
    assert any("IVF-PQ" in t for t in targets) and any("resident memory" in t for t in targets)

    (row,) = out["engines"]["rows"]
    assert row["videos"] == 4 and row["local"]["wall_s"] > 0
    if importlib.util.find_spec("ray") is not None:
        assert row["ray"]["wall_s"] > 0
    merge = out["engines"]["merge"]
    assert merge["rows"] == 5_000 and merge["peak_rss_growth_mb"] >= 0
    markdown = (tmp_path / "bench.md").read_text()
    assert "### Search at ten million" in markdown and "### Index engines" in markdown
    assert (ROOT / "BENCHMARKS.md").read_text() == before


def test_extra_sections_run_only_when_named() -> None:
    assert BenchConfig().sections == SECTIONS and not set(EXTRA_SECTIONS) & set(SECTIONS)
    assert BenchConfig(sections=("scale",)).markdown_target() is None  # bench:main is a full run's
    assert BenchConfig(sections=("scale",)).command == "python -m demo bench --only scale"
