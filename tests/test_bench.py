"""The benchmark runner: `python -m demo bench --quick` end to end, the BENCHMARKS.md
section writer, and the search helpers it times. No timing assertions: only that every
section is there and its numbers are sane."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from demo.bench.runner import SECTION, SECTIONS, BenchConfig
from demo.cli import main
from demo.files import markers, replace_section
from demo.index.binary import binarize, build_binary_index, hamming_search, l2_normalize, rerank_rows


def _positive_timing(t: dict[str, float]) -> None:
    assert t["p50_ms"] > 0 and t["p95_ms"] >= t["p50_ms"] and t["reps"] >= 1


@pytest.mark.slow
def test_quick_bench_writes_every_section(tmp_path: Path) -> None:
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "bench.json").read_text())
    assert set(SECTIONS) <= set(out) and out["meta"]["quick"] is True
    assert out["meta"]["cores"] >= 1 and out["meta"]["faiss"] and out["meta"]["torch"]
    assert out["meta"]["command"] == "python -m demo bench --quick"

    results = out["search"]["results"]
    assert {r["data"] for r in results} == {"clustered", "realistic"}
    for r in results:
        assert r["n"] == 20_000 and r["dim"] == 512
        assert {"numpy", "faiss_flat", "binary_rerank100", "binary_rerank500", "hnsw"} <= set(r["methods"])
        hnsw, default = r["methods"]["hnsw"], r["methods"]["binary_rerank400"]  # the flat default at 20k
        assert hnsw["target_recall10"] == default["recall@10"] and hnsw["build_s"] > 0
        for m in r["methods"].values():
            _positive_timing(m["one"])
            _positive_timing(m["batch"])
            assert m["kept_mb"] > 0
            for key in ("recall@1", "recall@10"):
                assert 0.0 <= m.get(key, 1.0) <= 1.0
        assert r["methods"]["faiss_flat"]["recall@1"] >= 0.99  # faiss flat is exact too
        assert r["methods"]["binary_rerank100"]["kept_mb"] == pytest.approx(20_000 * 64 / 2**20)
        recalls = [s["recall@1"] for s in r["sweep"]]
        assert recalls == sorted(recalls)  # deeper rerank never finds less
    clustered = next(r for r in results if r["data"] == "clustered")
    assert clustered["methods"]["binary_rerank500"]["recall@10"] >= 0.9

    query = out["query"]
    assert [row["precision"] for row in query["rows"]][:2] == ["fp32", "int8"]
    assert {row["threads"] for row in query["rows"]} >= {1} and len(query["rows"]) in (2, 4)
    for row in query["rows"]:
        _positive_timing(row["encode"])
        _positive_timing(row["end_to_end"])
    agreement = query["agreement"]
    assert 0.0 <= agreement["identical_top_k"] <= 1.0 and agreement["queries"] == 5

    (row,) = out["indexing"]["rows"]
    assert row["videos"] == 4 and row["pipelined_videos_per_s"] > 0 and row["serial_videos_per_s"] > 0
    assert 0.0 <= row["decode_share_serial"] <= 1.0 and 0.0 <= row["decode_share_pipelined"] <= 1.0

    assert "skipped" in out["app"]
    assert out["decode"]["load_clip_ms"] > 0
    assert all(t["holds"] in (True, False, None) for t in out["targets"])
    assert any(t["target"].endswith("recall@10 vs exact") for t in out["targets"])
    markdown = (tmp_path / "bench.md").read_text()
    assert "### Search" in markdown and "### Targets" in markdown and "python -m demo bench --quick" in markdown


def test_section_selection_and_bad_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "decode", "--quick", "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "bench.json").read_text())
    assert "decode" in out and "search" not in out and out["meta"]["sections"] == ["decode"]
    assert out["meta"]["command"] == "python -m demo bench --quick --only decode"
    assert main(["bench", "--only", "nonsense", "--out", str(tmp_path)]) == 2
    assert "nonsense" in capsys.readouterr().err


def test_only_a_full_run_replaces_the_benchmarks_table() -> None:
    assert BenchConfig(quick=True).markdown_target() is None
    assert BenchConfig(sections=("decode",)).markdown_target() is None
    assert BenchConfig().markdown_target() == Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
    assert BenchConfig(quick=True, markdown=Path("x.md")).markdown_target() == Path("x.md")


def test_replace_section_keeps_everything_outside_the_markers() -> None:
    doc = "# Benchmarks\n\nintro\n\n<!-- evaluate:embedded -->\nkeep me\n<!-- /evaluate:embedded -->\n"
    begin, end = markers(SECTION)
    once = replace_section(doc, SECTION, "table one")
    assert once.startswith(doc.rstrip()) and once.endswith(f"{begin}\ntable one\n{end}\n")
    twice = replace_section(once + "\ntrailing text\n", SECTION, "table two\n")
    assert "table one" not in twice and f"{begin}\ntable two\n{end}" in twice
    assert twice.startswith(doc.rstrip()) and twice.endswith("\ntrailing text\n")
    assert replace_section("", SECTION, "t") == f"{begin}\nt\n{end}\n"


def test_rerank_rows_is_exact_on_its_candidates_and_drops_padding() -> None:
    rng = np.random.default_rng(0)
    emb = l2_normalize(rng.normal(size=(300, 64))).astype(np.float16)
    q = l2_normalize(rng.normal(size=(5, 64)))
    cand = np.stack([rng.choice(300, size=40, replace=False) for _ in q])
    cand[0, 30:] = -1  # faiss pads with -1 when it has fewer rows than asked for
    scores, rows = rerank_rows(emb, q, cand, k=10)
    for i in range(len(q)):
        ids = cand[i][cand[i] >= 0]
        sims = emb[ids].astype(np.float32) @ q[i]
        best = ids[np.argsort(-sims, kind="stable")[:10]]
        assert set(rows[i]) == set(best)
        np.testing.assert_allclose(scores[i], np.sort(sims)[::-1][:10], rtol=1e-5)
    few, few_rows = rerank_rows(emb, q[:1], cand[:1, 28:], k=10)  # 2 real candidates, 10 asked
    assert list(few_rows[0, 2:]) == [-1] * 8 and np.isneginf(few[0, 2:]).all()


def test_hamming_search_finds_nearest_codes_and_restores_threads() -> None:
    import faiss

    rng = np.random.default_rng(1)
    x = l2_normalize(rng.normal(size=(500, 64)))
    index = build_binary_index(binarize(x), 64)
    threads = faiss.omp_get_max_threads()
    for q in (x[:3], x[:40]):  # small batches run on one thread, larger ones on the default
        ids = hamming_search(index, q, 5)
        assert ids.shape == (len(q), 5) and (ids[:, 0] == np.arange(len(q))).all()
        assert faiss.omp_get_max_threads() == threads


def test_quantize_text_tower_swaps_linear_layers_and_keeps_embeddings(tiny_clip4clip: Path) -> None:
    import torch

    from demo.bench.query import quantize_text_tower, quantized_copy
    from demo.models.encoders import Clip4ClipEncoder

    encoder = Clip4ClipEncoder.from_pretrained(tiny_clip4clip, device="cpu")
    texts = ["a red circle moving left", "two squares"]
    before = encoder.encode_texts(texts)
    twin = quantized_copy(encoder)
    assert not any(type(m) is torch.nn.Linear for m in twin.model.text.modules())
    assert any(type(m) is torch.nn.Linear for m in encoder.model.text.modules())  # the original is kept
    after = twin.encode_texts(texts)
    assert after.shape == before.shape
    np.testing.assert_allclose(np.linalg.norm(after, axis=1), 1.0, atol=1e-5)
    assert (np.sum(before * after, axis=1) > 0.95).all()
    encoder.device = "cuda"  # only the attribute: the check comes before any work
    with pytest.raises(ValueError, match="CPU"):
        quantize_text_tower(encoder)
    encoder.device = "cpu"
    assert quantize_text_tower(encoder) is encoder


def test_realistic_copies_keep_the_geometry_of_narrow_embeddings(tmp_path: Path) -> None:
    from demo.bench.data import RealBase, nn_cosine, orthonormal_map, realistic_sets

    rng = np.random.default_rng(2)
    videos = l2_normalize(rng.normal(size=(50, 16)) + 2.0)  # anisotropic, like trained embeddings
    captions = l2_normalize(videos[rng.integers(0, 50, 80)] + 0.3 * rng.normal(size=(80, 16)))
    lift = orthonormal_map(16, 64, seed=0)
    assert lift is not None and lift.shape == (16, 64)
    np.testing.assert_allclose(videos @ videos.T, (videos @ lift) @ (videos @ lift).T, atol=1e-5)
    base = RealBase(videos, captions, [f"c{i}" for i in range(80)], None, "test base")
    small, big = realistic_sets(tmp_path, base, (1000, 5000), queries=40, dim=64)
    assert (small.n, big.n, big.dim) == (1000, 5000, 64) and big.queries.shape == (40, 64)
    emb = np.load(big.emb_path).astype(np.float32)
    np.testing.assert_array_equal(np.load(small.emb_path), np.load(big.emb_path)[:1000])
    np.testing.assert_array_equal(np.load(big.codes_path), binarize(np.load(big.emb_path)))
    np.testing.assert_allclose(emb[:50], (videos @ lift).astype(np.float16).astype(np.float32), atol=2e-3)
    copy_cos = np.sum(emb[50:1000] * emb[np.arange(50, 1000) % 50], axis=1)  # copy i of video i % 50
    assert abs(np.median(copy_cos) - nn_cosine(videos)) < 0.05


def test_stall_watch_counts_time_the_process_could_not_run() -> None:
    import sys
    import time

    from demo.bench.runner import StallWatch

    switch = sys.getswitchinterval()
    sys.setswitchinterval(2.0)  # the busy loop below keeps the GIL, as a stopped process would
    try:
        with StallWatch(period=0.01, threshold=0.2) as watch:
            time.sleep(0.05)
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                pass
            time.sleep(0.05)
    finally:
        sys.setswitchinterval(switch)
    assert watch.count >= 1 and 0.2 < watch.stalled_s < 2.0
    with StallWatch(period=0.01, threshold=0.2) as calm:
        time.sleep(0.1)
    assert calm.count == 0 and calm.stalled_s == 0.0


def test_busy_note_counts_other_processes_not_the_run_itself() -> None:
    from demo.bench.markdown import busy_note

    # The bench's own two threads put the load average near 2; that is not competition.
    quiet = {"cores": 2, "load_average": [1.7], "load_average_after": [1.9], "other_cpu_share": 0.02}
    assert busy_note(quiet) is None
    assert "40%" in (busy_note({**quiet, "other_cpu_share": 0.4}) or "")
    # Without the share (older results), only the load at the start counts.
    assert busy_note({"cores": 2, "load_average": [0.3], "load_average_after": [2.0]}) is None
    assert busy_note({"cores": 2, "load_average": [3.0], "load_average_after": [2.0]}) is not None


def test_cpu_seconds_sees_this_process_work() -> None:
    import time

    from demo.bench.common import cpu_seconds

    before = cpu_seconds()
    if before is None:
        pytest.skip("no /proc/stat on this system")
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    after = cpu_seconds()
    assert after is not None
    assert after[1] - before[1] >= 0.25  # own CPU time
    assert after[0] - before[0] >= 0.2  # the machine's busy time includes it


def test_extra_sections_run_only_when_named_and_write_their_own_section(tmp_path: Path) -> None:
    """`bench import` (a WebVid-layout import in a child process) and `bench resize`, quick sizes."""
    from demo.bench.runner import EXTRA_SECTIONS, run_bench

    assert not set(EXTRA_SECTIONS) & set(SECTIONS)  # a plain `python -m demo bench` does not run them
    target = tmp_path / "B.md"
    target.write_text("# B\n\n<!-- bench:import -->\nSTALE\n<!-- /bench:import -->\ntail\n")
    out = run_bench(BenchConfig(sections=("import", "resize"), quick=True, out=tmp_path / "o", markdown=target))
    text = target.read_text()
    assert "STALE" not in text and text.endswith("<!-- /bench:resize -->\n") and "tail\n" in text
    assert "| import peak resident memory" in out["markdown"] and "20,000 synthetic rows" in text
    assert "yes |" in text.split("import wall time")[1].splitlines()[0]
    assert "grey levels" in text and (tmp_path / "o" / "bench-import.json").is_file()


def test_bench_text_names_no_absolute_path(tmp_path: Path) -> None:
    """An index outside the project (another checkout, a scratch folder) is named without the machine's
    folders, in the realistic set's note and in the recorded command."""
    import re
    import shutil

    from demo.bench.data import real_base
    from demo.presets import EMBEDDED

    assert EMBEDDED.index is not None
    index = Path(shutil.copytree(EMBEDDED.index, tmp_path / "elsewhere" / "precomputed" / "index-world"))
    absolute = re.compile(r"(^|[\s(`'\"])/[A-Za-z]")
    note = real_base(tmp_path / "work", index).note
    assert note.startswith("index .../precomputed/index-world (2500 videos") and not absolute.search(note), note
    command = BenchConfig(sections=("search",), index=index).command
    assert command.endswith("--index .../precomputed/index-world") and not absolute.search(command), command
    missing = tmp_path / "nowhere" / "index"  # the fallback's note names the missing folder the same way
    assert str(tmp_path) not in BenchConfig(index=missing).command


@pytest.mark.slow
def test_quick_recall_section_compares_the_tuned_default_with_hnsw(tmp_path: Path) -> None:
    """`bench recall --quick`: the three sets at 20k rows, the IVF forced (as from 200k), numpy, the tuned
    default and HNSW, each with recall@1 / recall@10; the targets evaluated."""
    from demo.bench.runner import run_bench

    target = tmp_path / "B.md"
    out = run_bench(BenchConfig(sections=("recall",), quick=True, out=tmp_path / "o", markdown=target))
    results = out["recall"]["results"]
    assert [r["data"] for r in results] == ["clustered-mean", "realistic", "searchium"]
    for r in results:
        assert r["n"] == 20_000 and r["first_stage"] == "ivf-pq" and set(r["methods"]) == {"numpy", "default", "hnsw"}
        d, h = r["methods"]["default"], r["methods"]["hnsw"]
        assert d["tuned"]["queries"] > 0 and d["nprobe"] >= 1 and d["rerank"] >= 1  # depth from the tuning
        assert d["label"] == f"IVF-PQ nprobe{d['nprobe']} + rerank{d['rerank']} (default, tuned)"
        for m in (d, h):
            assert 0.0 <= m["recall@1"] <= 1.0 and 0.0 <= m["recall@10"] <= 1.0 and m["build_s"] > 0
            _positive_timing(m["one"])
        sweep = [s["ef_search"] for s in h["ef_sweep"]]
        assert sweep == sorted(sweep) and h["ef_search"] == sweep[-1] and h["target_recall10"] == d["recall@10"]
        assert h["reached"] == (h["ef_sweep"][-1]["recall@10"] >= d["recall@10"])
        assert h["kept_mb"] > 20_000 * 512 * 4 / 2**20  # its own float32 rows, plus the graph
    names = [t["target"] for t in out["targets"]]
    assert len(names) == 9 and sum("recall@10 vs exact" in n for n in names) == 3
    assert sum("speed-up over numpy" in n for n in names) == 3
    assert all(t["holds"] in (True, False) for t in out["targets"])
    text = out["markdown"]
    assert "faiss HNSW M=32 efSearch" in text and "| near-duplicates |" in text and "### Targets" in text
    assert "faiss HNSW M=32 efSearch" in target.read_text()  # --markdown: the run goes to that file
    short = BenchConfig(sections=("recall",), rows=(200_000,))
    assert short.command == "python -m demo bench --only recall --rows 200000" and short.markdown_target() is None


def test_recall_targets_say_pass_or_fail() -> None:
    from demo.bench.recall import RECALL_LIMITS, recall_targets

    def result(r10: float, r1: float, p50: float) -> dict[str, object]:
        timing = {"p50_ms": p50, "p95_ms": p50, "reps": 5}
        default = {"label": "IVF-PQ nprobe48 + rerank750 (default, tuned)", "one": timing, "recall@1": r1,
                   "recall@10": r10}
        numpy = {"one": {"p50_ms": 100.0, "p95_ms": 100.0, "reps": 5}}
        return {"data": "searchium", "n": 1_500_000, "fallback": False, "methods": {"numpy": numpy, "default": default}}

    good, bad = result(0.97, 0.995, 5.0), result(0.94, 0.98, 20.0)
    rows = recall_targets({"results": [good, bad], "limits": RECALL_LIMITS})
    assert [r["holds"] for r in rows] == [True, True, True, False, False, False]
    assert rows[0]["target"] == "default search (IVF-PQ nprobe48 + rerank750), recall@10 vs exact"
    assert rows[2]["measured"] == "20.0x: 5.00 ms vs numpy 100 ms (Searchium layout N=1,500,000)"


def test_hnsw_method_stops_at_the_first_efsearch_reaching_the_target(tmp_path: Path) -> None:
    from demo.bench.data import clustered_sets
    from demo.bench.recall import hnsw_method
    from demo.bench.search import SearchScale, float_methods

    (ss,) = clustered_sets(tmp_path, (3000,), dim=64, clusters=20, queries=32)
    scale = SearchScale(reps=3, batch_reps=2, min_reps=2, budget_s=1.0)
    _, exact = float_methods(ss, scale, with_flat=False)
    row = hnsw_method(ss, scale, exact, target=0.9)
    reached = [s["recall@10"] >= 0.9 for s in row["ef_sweep"]]
    assert reached[-1] and not any(reached[:-1]) and row["reached"]
    assert row["label"] == f"faiss HNSW M=32 efSearch {row['ef_search']}" and row["recall@10"] >= 0.9
    never = hnsw_method(ss, scale, exact, target=1.01)  # unreachable: the whole sweep, marked
    assert not never["reached"] and never["ef_search"] == 2048 and len(never["ef_sweep"]) == 15
