"""The IVF-PQ first stage: chosen by size and recorded in the manifest, small indexes unchanged
(the flat binary path, same results), a large one's candidates good enough for recall@1, and
its trained lists saved with the index and loaded back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from demo.index.binary import build_binary_index, exact_top_k, hamming_search, l2_normalize, rerank_rows
from demo.index.format import write_id_of
from demo.index.ivf import FLAT, IVF_PQ, FirstStage, choose
from demo.index.store import data_files
from demo.index.video_index import VideoIndex
from demo.models.fingerprint import ModelFingerprint

DIM = 64
FP = ModelFingerprint("m", "meanP", DIM, 32, 8, 1.0)


def clustered(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows around 200 centres, and 100 queries near rows of them."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((200, DIM))
    x = centres[rng.integers(0, 200, n)] + 0.5 * rng.standard_normal((n, DIM))
    return x, l2_normalize(x[:100] + 0.3 * rng.standard_normal((100, DIM)))


def rows(n: int) -> list[dict[str, str]]:
    return [{"id": str(i), "path": f"{i}.mp4"} for i in range(n)]


def test_choice_by_size() -> None:
    assert choose(199_999, 512) == FirstStage() and choose(200_000, 512).kind == IVF_PQ
    big = choose(10_000_000, 512)
    assert (big.nlist, big.m, big.nprobe) == (4096, 64, 32)
    assert FirstStage.from_dict(big.to_dict()) == big and FirstStage.from_dict(None).kind == FLAT
    assert FirstStage().to_dict() == {"kind": FLAT}


def test_small_index_searches_exactly_as_before(tmp_path: Path) -> None:
    x, q = clustered(3000)
    index = VideoIndex.from_arrays(FP, x, rows(len(x)))
    index.save(tmp_path / "i")
    assert json.loads((tmp_path / "i" / "manifest.json").read_text())["first_stage"] == {"kind": FLAT}
    loaded = VideoIndex.load(tmp_path / "i")
    scores, found = loaded.search_rows(q, 10)
    binary = build_binary_index(loaded.codes, DIM)
    want = rerank_rows(loaded.embeddings, q, hamming_search(binary, q, 100), 10)
    assert np.array_equal(found, want[1]) and np.allclose(scores, want[0], atol=1e-6)
    assert "ivf" not in data_files(tmp_path / "i")


def test_old_manifest_without_first_stage_loads_flat(tmp_path: Path) -> None:
    x, _ = clustered(500)
    VideoIndex.from_arrays(FP, x, rows(len(x))).save(tmp_path / "i")
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text())
    del manifest["first_stage"]
    (tmp_path / "i" / "manifest.json").write_text(json.dumps(manifest))
    assert VideoIndex.load(tmp_path / "i").first_stage.kind == FLAT


def test_ivf_first_stage_finds_the_exact_top1_and_round_trips(tmp_path: Path) -> None:
    x, q = clustered(30_000)
    index = VideoIndex.from_arrays(FP, x, rows(len(x)))
    index.info["first_stage"] = choose(len(x), DIM, min_rows=0).to_dict()  # force it at this size
    assert index.first_stage.kind == IVF_PQ and index.first_stage.nlist == 128
    scores, found = index.search_rows(q, 10)
    exact = exact_top_k(index.embeddings, q, 10)[1]
    assert np.mean(found[:, 0] == exact[:, 0]) >= 0.98
    index.save(tmp_path / "i")
    files = data_files(tmp_path / "i")
    assert files["ivf"].is_file() and write_id_of(files["ivf"].name)
    loaded = VideoIndex.load(tmp_path / "i")
    assert loaded.first_stage == index.first_stage
    again = loaded.search_rows(q, 10)
    assert np.array_equal(again[1], found) and np.allclose(again[0], scores)
    one_list = loaded.search_rows(q, 10, nprobe=1)[1]  # fewer lists scanned: fewer right answers
    assert np.mean(one_list[:, 0] == exact[:, 0]) <= np.mean(found[:, 0] == exact[:, 0])
    loaded.metadata[0]["note"] = "saved again"  # a re-save keeps the trained lists as they are
    loaded.save(tmp_path / "i", overwrite=True)
    assert np.array_equal(VideoIndex.load(tmp_path / "i").search_rows(q, 10)[1], found)


def test_tuned_depth_probes_twice_the_cheapest_lists(tmp_path: Path) -> None:
    """The depth recorded is the cheapest pair meeting the targets on held-out rows, with twice its lists:
    captions sit off the rows' distribution (on near-duplicates the cheapest nprobe found the true top-1
    for 0.988 of caption queries, twice as many lists for 0.996)."""
    from demo.index.tuning import NPROBES, build_first_stage

    x, _ = clustered(20_000)
    entry, ivf = build_first_stage(l2_normalize(x).astype(np.float16), choose(20_000, DIM, min_rows=0))
    cheapest = entry["tuned"]["cheapest_nprobe"]
    assert ivf is not None and entry["nprobe"] == min(p for p in NPROBES if p >= 2 * cheapest)
    assert entry["tuned"]["recall@1"] >= 0.995 and entry["tuned"]["recall@10"] >= 0.97
