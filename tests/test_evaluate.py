"""The evaluation module: known answers from planted embeddings, binarised ranks against
brute force, and the three suites end to end on tiny random checkpoints."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import moving_square_clip

from demo.cli import main
from demo.evaluate.corpus import Corpus
from demo.evaluate.encode import encode_corpus
from demo.evaluate.metrics import ranks_for
from demo.evaluate.results import PUBLISHED_WEBVID10K, EvalResult, section_name
from demo.evaluate.suites import ModelSpec, binary_rerank_ranks, evaluate_embedded, evaluate_features, model_rows
from demo.files import replace_section
from demo.index.binary import binarize, l2_normalize


def _save_pair(folder: Path, text: np.ndarray, video: np.ndarray) -> tuple[Path, Path]:
    t, v = folder / "text.npy", folder / "video.npy"
    np.save(t, text.astype(np.float32))
    np.save(v, video.astype(np.float32))
    return t, v


def test_planted_matches_give_perfect_recall(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    video = rng.normal(size=(300, 64))
    text = video + 0.01 * rng.normal(size=video.shape)
    result = evaluate_features(*_save_pair(tmp_path, text, video))
    for name in ("features", "features, binarised + rerank100", "features, binarised + rerank500"):
        m = result.row(name).metrics
        assert (m["R@1"], m["MdR"], m["MnR"]) == (100.0, 1.0, 1.0), name
    assert result.row("features", "v2t").metrics["R@1"] == 100.0
    assert result.row("features").recall_curve == [100.0] * 50
    # Features are compared with the published WebVid model's rows.
    delta = result.row("features").delta()
    assert delta is not None and delta["R@1"] == pytest.approx(100.0 - 50.74)


def test_swapped_half_gives_exactly_half(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 200
    video = np.repeat(rng.normal(size=(n // 2, 32)), 2, axis=0)
    video += 0.3 * rng.normal(size=video.shape)  # videos 2k and 2k+1 look alike, the rest do not
    text = video + 0.01 * rng.normal(size=video.shape)
    order = np.arange(n)
    order[: n // 2] = order[: n // 2].reshape(-1, 2)[:, ::-1].ravel()  # swap (0,1), (2,3), ... (98,99)
    text = text[order]  # first 100 queries describe their neighbour's video: exactly 100 wrong
    result = evaluate_features(*_save_pair(tmp_path, text, video), rerank=(100,))
    t2v = result.row("features").metrics
    assert t2v["R@1"] == 50.0 and t2v["R@5"] == 100.0
    assert t2v["MnR"] == pytest.approx((100 * 1 + 100 * 2) / n)  # each swapped truth is second
    assert result.row("features", "v2t").metrics["R@1"] == 50.0
    assert result.row("features, binarised + rerank100").metrics["R@1"] == 50.0


def _brute_binary_ranks(q: np.ndarray, c: np.ndarray, gt: np.ndarray, r: int) -> np.ndarray:
    q, c = l2_normalize(q), l2_normalize(c)
    bits_q, bits_c = np.unpackbits(binarize(q), axis=1), np.unpackbits(binarize(c), axis=1)
    cos = q @ c.T
    out = []
    for i, g in enumerate(gt):
        ham = (bits_q[i][None, :] != bits_c).sum(1)
        order = sorted(range(len(c)), key=lambda j: (ham[j], j == g, j))  # ties against the truth
        cand = order[:r]
        if g in cand:
            out.append(1 + sum(cos[i, j] >= cos[i, g] for j in cand if j != g))
        else:  # R + 1 + non-candidates at Hamming distance <= the truth's
            out.append(r + 1 + sum(ham[j] <= ham[g] for j in range(len(c)) if j != g and j not in cand))
    return np.array(out)


@pytest.mark.parametrize("r", [1, 3, 10, 40, 60])
def test_binary_rerank_ranks_match_brute_force(r: int) -> None:
    rng = np.random.default_rng(r)
    c = rng.normal(size=(50, 16))  # 16 bits: many Hamming ties
    c[10] = c[11]  # an exact duplicate: a cosine tie
    gt = rng.integers(0, 50, size=40)
    q = c[gt] + 0.8 * rng.normal(size=(40, 16))
    q[0], gt[0] = c[11], 10  # its truth ties with a duplicate: rank >= 2
    got = binary_rerank_ranks(q, c, gt, r)
    np.testing.assert_array_equal(got, _brute_binary_ranks(q, c, gt, r))
    assert got[0] >= 2
    if r >= 50:  # every candidate reranked: exact cosine ranks
        np.testing.assert_array_equal(got, ranks_for(l2_normalize(q) @ l2_normalize(c).T, gt))


def test_binary_candidates_are_the_hamming_nearest() -> None:
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(5)
    c, q = rng.normal(size=(80, 64)), rng.normal(size=(20, 64))
    index = faiss.IndexBinaryFlat(64)
    index.add(binarize(c))
    dist, _ = index.search(binarize(q), 10)
    bits_q, bits_c = np.unpackbits(binarize(q), axis=1), np.unpackbits(binarize(c), axis=1)
    for i in range(len(q)):
        ham = (bits_q[i][None] != bits_c).sum(1)
        assert sorted(ham)[:10] == sorted(dist[i].tolist())  # faiss sees the same distances
        # A truth among faiss's 10 nearest is reranked, one outside is ranked behind them.
        rank = binary_rerank_ranks(q[i:i + 1], c, np.array([int(np.argmax(ham))]), 10)[0]
        assert rank > 10


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t, v = _save_pair(tmp_path, np.ones((5, 8)), np.ones((6, 8)))
    assert main(["evaluate", "--features", str(t), str(v), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "(5, 8)" in err and "(6, 8)" in err and len(err.splitlines()) == 1
    assert main(["evaluate", "--features", str(tmp_path / "nope.npy"), str(v)]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope.npy" in err and len(err.splitlines()) == 1
    assert main(["evaluate", "--suite", "webvid"]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["evaluate", "--features", str(t), str(t), "--write-benchmarks"]) == 2
    assert "embedded suite only" in capsys.readouterr().err


def test_features_cli_writes_table_json_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(2)
    video = rng.normal(size=(120, 32))
    t, v = _save_pair(tmp_path, video + 0.05 * rng.normal(size=video.shape), video)
    out = tmp_path / "out"
    assert main(["evaluate", "--features", str(t), str(v), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| Model | R@1 | R@5 | R@10 | MdR | MnR |" in printed
    assert "*published, WebVid-10k:* CLIP4Clip (150k WebVid) | 50.74 | 77.30 | 85.05 | 1 | 14.95" in printed
    data = json.loads((out / "results.json").read_text())
    assert data["info"]["command"].startswith("python -m demo evaluate --")
    assert data["published"]["rows"] == PUBLISHED_WEBVID10K
    assert (out / "recall_at_k.png").read_bytes()[:4] == b"\x89PNG"


def test_replace_section_keeps_the_rest() -> None:
    doc = replace_section("# Benchmarks\n\nintro\n", section_name("embedded"), "table 1\n")
    assert doc.count("<!-- evaluate:embedded -->") == 1 and "intro" in doc
    doc = replace_section(doc + "\nlater text\n", section_name("embedded"), "table 2\n")
    assert "table 1" not in doc and "table 2" in doc and doc.rstrip().endswith("later text")


# --- suites with models ---------------------------------------------------------------


@pytest.fixture(scope="module")
def webvid_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Five WebVid-layout clips (videoid,name,contentUrl; DIR/<videoid>.mp4), one missing, one corrupt."""
    root = tmp_path_factory.mktemp("webvid")
    videos = root / "videos"
    videos.mkdir()
    rows = []
    colours = {"red": (255, 40, 40), "green": (40, 220, 60), "blue": (50, 80, 255)}
    for n, (name, rgb) in enumerate(colours.items()):
        for direction, word in ((1, "right"), (-1, "left")):
            vid = str(1000 + 2 * n + (direction < 0))
            if vid != "1005":  # listed but never downloaded
                moving_square_clip(videos / f"{vid}.mp4", direction, rgb, frames=12)
            rows.append((vid, f"a {name} square moving {word}", f"https://example.org/v/{vid}.mp4"))
    (videos / "1099.mp4").write_bytes(b"not a video")
    rows.append(("1099", "a broken file", "https://example.org/v/1099.mp4"))
    csv_path = root / "results_10M_val.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["videoid", "name", "contentUrl"])
        writer.writerows(rows)
    return csv_path, videos


def test_webvid_suite_end_to_end_with_cache(webvid_data: tuple[Path, Path], tiny_clip4clip: Path,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from demo.models.clip4clip import Clip4Clip

    csv_path, videos = webvid_data
    calls = []
    real = Clip4Clip.frame_embeddings
    monkeypatch.setattr(Clip4Clip, "frame_embeddings",
                        lambda self, f, m: calls.append(len(f)) or real(self, f, m))
    argv = ["evaluate", "--suite", "webvid", "--data", str(csv_path), "--videos", str(videos),
            "--models", f"{tiny_clip4clip}:seqTransf", "--no-hub", "--cache", str(tmp_path / "cache"),
            "--batch-size", "2", "--workers", "2", "--device", "cpu", "--json"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert sum(calls) == 5  # five readable clips (the broken one fails in decoding)
    first = json.loads((tmp_path / "a" / "results.json").read_text())
    assert first["info"]["skipped"]["count"] == 2
    assert {vid for vid, _ in first["info"]["skipped"]["first"]} == {"1005", "1099"}
    assert "5 videos" in first["info"]["test_set"]
    names = {(r["name"], r["task"]) for r in first["rows"]}
    assert ("tiny-c4c (seqTransf), binarised + rerank100", "t2v") in names
    assert ("tiny-c4c (seqTransf)", "v2t") in names
    calls.clear()
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert calls == []  # everything came from the cache
    second = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [r["metrics"] for r in second["rows"]] == [r["metrics"] for r in first["rows"]]
    assert second["info"]["models"][0]["clips_encoded_now"] == 0


def test_shared_features_match_the_encoder(webvid_data: tuple[Path, Path], tiny_clip4clip: Path) -> None:
    from demo.models.encoders import Clip4ClipEncoder

    paths = [str(p) for p in sorted(webvid_data[1].glob("10[0-4]*.mp4"))]
    enc = encode_corpus(str(tiny_clip4clip), ["meanP", "seqTransf"], paths, ["a red square"], device="cpu")
    for pooling in ("meanP", "seqTransf"):
        ref = Clip4ClipEncoder.from_pretrained(tiny_clip4clip, pooling=pooling, device="cpu")
        np.testing.assert_allclose(enc.videos[pooling], ref.encode_videos(paths), atol=1e-5)
    assert not np.allclose(enc.videos["meanP"], enc.videos["seqTransf"])
    np.testing.assert_allclose(enc.texts, ref.encode_texts(["a red square"]), atol=1e-6)


def test_embedded_suite_on_a_tiny_stand_in(tmp_path: Path, tiny_clip4clip: Path, tiny_clip4clip_other: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from demo.models.clip4clip import Clip4Clip

    calls = []
    real = Clip4Clip.frame_embeddings
    monkeypatch.setattr(Clip4Clip, "frame_embeddings",
                        lambda self, f, m: calls.append(len(f)) or real(self, f, m))
    seen: list[float] = []
    world = tmp_path / "world"  # empty: the suite renders the test clips it needs
    result = evaluate_embedded(world, tiny_clip4clip_other, tiny_clip4clip, limit=12, rerank=(5,),
                               device="cpu", batch_size=6, workers=1, progress=lambda f, m: seen.append(f))
    assert (world / "test.jsonl").is_file() and len(list((world / "clips" / "test").glob("*.mp4"))) == 12
    assert sum(calls) == 2 * 12  # two backbones; meanP and seqTransf share one pass
    assert seen[-1] == 1.0 and seen == sorted(seen)
    t2v = [r.name for r in result.table("t2v")]
    assert t2v == ["zero-shot (image-pretrained CLIP, meanP)", "CLIP4Clip meanP", "CLIP4Clip seqTransf",
                   "CLIP4Clip seqTransf, binarised + rerank5"]
    assert all(r.queries == 12 for r in result.table("t2v"))
    assert result.table("t2v-all") and result.table("t2v-all")[0].queries > 12  # several captions per clip
    pairs = result.row("CLIP4Clip meanP", "t2v-pairs")
    assert pairs.queries == 8 and 0.0 <= pairs.metrics["Twin"] <= 100.0
    assert result.row("CLIP4Clip seqTransf", "t2v-heldout").queries == 2
    assert "Twin" in result.row("CLIP4Clip seqTransf", "t2v-pairs").metrics
    md = result.to_markdown()
    assert "Direction-sensitive subset" in md and "different data" in md
    assert all(r.published is None for r in result.rows)  # no WebVid counterparts on the world
    # every pooling's t2v row says how often it names the event of the lone-object clips
    assert "lone-object clips (12 events" in result.row("CLIP4Clip seqTransf", "t2v").notes


def test_embedded_suite_scores_every_head_of_a_checkpoint(tmp_path: Path, make_tiny_clip4clip: Any) -> None:
    from demo.models.clip4clip import Clip4Clip
    from demo.models.temporal import build_head
    from demo.models.tokenizer import build_clip_tokenizer_files

    model = Clip4Clip.from_pretrained(make_tiny_clip4clip(tmp_path / "c", pooling="tdb+tab"))
    for name in ("seqTransf", "tdb"):
        model.heads[name] = build_head(model.settings, model.dim, name)
    build_clip_tokenizer_files(model.save_pretrained(tmp_path / "all"))
    result = evaluate_embedded(tmp_path / "world", None, tmp_path / "all", limit=12, rerank=(5,), device="cpu",
                               batch_size=6, workers=1)
    assert [r.name for r in result.table("t2v")] == ["CLIP4Clip meanP", "CLIP4Clip seqTransf", "CLIP2Video TDB",
                                                      "CLIP2Video TDB+TAB", "CLIP2Video TDB+TAB, binarised + rerank5"]
    assert {m["row"]: m["dim"] for m in result.info["models"]}["CLIP2Video TDB+TAB"] == 2 * model.dim


def test_embedded_cli_writes_benchmarks(tmp_path: Path, tiny_clip4clip: Path) -> None:
    from demo.world import synth

    world = tmp_path / "world"
    synth(world, splits=("test",), limit=6, workers=1, progress=False)
    model = Path(shutil.copytree(tiny_clip4clip, tmp_path / "c4c"))
    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text("# Benchmarks\n\nhand-written notes\n")
    argv = ["evaluate", "--world", str(world), "--zero-shot", "none", "--clip4clip", str(model),
            "--rerank", "3", "--no-cache", "--workers", "1", "--out", str(tmp_path / "out"),
            "--write-benchmarks", "--benchmarks", str(bench)]
    readme = tmp_path / "README.md"  # the README beside BENCHMARKS.md gets its results table too
    readme.write_text("# Guide\n\n<!-- results:embedded -->\nold\n<!-- /results:embedded -->\n\nmore\n")
    assert main(argv) == 0
    text = bench.read_text()
    assert "hand-written notes" in text and "<!-- /evaluate:embedded -->" in text
    assert "| CLIP4Clip seqTransf, binarised + rerank3 |" in text
    guide = readme.read_text()
    assert guide.startswith("# Guide\n\n<!-- results:embedded -->\n| Model | R@1 |") and guide.endswith("\n\nmore\n")
    assert "| CLIP4Clip seqTransf |" in guide and "old" not in guide
    saved = json.loads((model / "eval.json").read_text())
    assert saved["suite"] == "embedded" and "markdown" in saved
    assert main(argv) == 0
    assert bench.read_text().count("<!-- evaluate:embedded -->") == 1
    assert main(["evaluate", "--world", str(world), "--clip4clip", str(tmp_path / "missing")]) == 2


def test_model_rows_on_a_corpus_without_models() -> None:
    """Several captions per video and subsets, straight from embeddings."""
    rng = np.random.default_rng(3)
    videos = l2_normalize(rng.normal(size=(6, 8)))
    texts = l2_normalize(np.repeat(videos, 2, axis=0) + 0.01 * rng.normal(size=(12, 8)))
    corpus = Corpus("mem", [str(i) for i in range(6)], [""] * 6, [[f"{i}a", f"{i}b"] for i in range(6)],
                    subsets={"t2v-heldout": np.array([1, 4])})
    rows = model_rows(ModelSpec("m", "m"), texts, videos, corpus)
    result = EvalResult("test", rows)
    assert result.row("m", "t2v-all").queries == 12 and result.row("m", "t2v-all").metrics["R@1"] == 100.0
    assert result.row("m", "v2t-all").queries == 6
    assert result.row("m", "t2v-heldout").queries == 2


def test_report_states_free_form_hits_and_the_caption_words_control():
    from demo.evaluate.results import EvalResult

    freeform = {"queries": 60, "hit@1": 10.0, "hit@5": 40.0, "index_size": 2500,
                "caption_words": {"hit@1": 20.0, "hit@5": 55.0},
                "examples": [{"query": "a red star drifting to the left", "first_match_rank": None}]}
    md = EvalResult(suite="embedded", rows=[], freeform=freeform).to_markdown()
    assert "in the top 5 for 40.0%" in md and "20.0% at rank 1, 55.0% in the top 5" in md
    assert '- "a red star drifting to the left": first match at rank > 5' in md
    older = EvalResult(suite="embedded", rows=[], freeform={k: v for k, v in freeform.items() if k != "caption_words"})
    assert "own words" not in older.to_markdown() and "in the top 5 for 40.0%" in older.to_markdown()


def test_report_shows_where_free_form_misses_come_from():
    from demo.evaluate.results import EvalResult

    freeform = {"queries": 2, "hit@1": 0.0, "hit@5": 50.0, "index_size": 10, "examples": [],
                "agreement": {"colour": 100.0, "shape": 20.0, "event": 40.0}, "shape_blind": 62.5,
                "events": {"clips": 3, "accuracy": 66.7, "events": {
                    "moving up": {"clips": 2, "accuracy": 50.0, "confused_with": "bouncing"},
                    "growing": {"clips": 1, "accuracy": 100.0, "confused_with": None}}}}
    md = EvalResult(suite="embedded", rows=[], freeform=freeform).to_markdown()
    assert "the asked colour 100.0%, shape 20.0%, event 40.0%" in md
    assert "blind to shape would answer 62.5%" in md
    assert "the right event first for 66.7%" in md
    assert "| moving up | 2 | 50.0 | bouncing |" in md and "| growing | 1 | 100.0 | - |" in md


def _small_result() -> EvalResult:
    from demo.evaluate.results import EvalRow

    ranks = np.array([1, 1, 2, 7])
    rows = [EvalRow.from_ranks("model a", "t2v", ranks), EvalRow.from_ranks("model a", "v2t", ranks[::-1]),
            EvalRow.from_ranks("model b", "t2v", ranks + 1)]
    return EvalResult("embedded", rows, {"command": "python -m demo evaluate --write-benchmarks",
                                         "created": "2026-12-07T03:30:34+00:00", "device": "cpu (test)",
                                         "test_set": "four planted queries"})


def test_writing_results_updates_the_readme_section_and_leaves_the_rest_byte_for_byte(tmp_path: Path) -> None:
    from demo.evaluate.results import README_SECTION, readme_table, write_benchmarks

    result = _small_result()
    before, after = "---\ntitle: x\n---\n\n# Guide ✓\r\n\n", "\n\ntail  \n\n## More\n"
    readme = tmp_path / "README.md"
    readme.write_bytes(f"{before}<!-- {README_SECTION} -->\nold table\n<!-- /{README_SECTION} -->{after}".encode())
    written = write_benchmarks(result, tmp_path / "BENCHMARKS.md", None, readme=readme)
    assert readme in written
    text = readme.read_bytes().decode()
    table = readme_table(result)
    assert text == f"{before}<!-- {README_SECTION} -->\n{table}\n<!-- /{README_SECTION} -->{after}"
    assert "| model a | 50.0 | 75.0 | 100.0 | 1.5 | 2.75 |" in table and "| model b |" in table
    assert table.count("| model a |") == 1  # text -> video rows only
    assert "`python -m demo evaluate --write-benchmarks` on 2026-12-07" in table
    # the same table from the JSON that eval.json keeps, so it can be regenerated without a run
    assert readme_table(json.loads(json.dumps(result.to_json()))) == table


def test_a_readme_without_the_section_is_left_alone(tmp_path: Path) -> None:
    from demo.evaluate.results import readme_table, write_benchmarks, write_readme_results

    plain = tmp_path / "README.md"
    plain.write_text("# Guide\n\nno results here\n")
    write_benchmarks(_small_result(), tmp_path / "BENCHMARKS.md", None, readme=plain)
    assert plain.read_text() == "# Guide\n\nno results here\n"
    assert not write_readme_results(tmp_path / "missing" / "README.md", _small_result())
    assert not (tmp_path / "missing").exists()
    with pytest.raises(ValueError, match="no text -> video rows"):
        readme_table({"rows": [{"task": "v2t"}]})


def test_the_shipped_readme_table_is_the_stored_run() -> None:
    """README.md's results section is what `evaluate --write-benchmarks` writes from the shipped eval.json."""
    from demo.evaluate.results import README_SECTION, readme_table
    from demo.evaluate.suites import CLIP4CLIP_WORLD
    from demo.files import markers
    from demo.presets import ROOT

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    begin, end = markers(README_SECTION)
    section = text[text.index(begin) + len(begin):text.index(end)].strip()
    assert section == readme_table(json.loads((CLIP4CLIP_WORLD / "eval.json").read_text()))
