"""A page that tells the truth: guesses say they are guesses, cut text says it was cut, the API
says what it returns, and who may start a long job is the operator's choice."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningApp

from demo.app.confidence import QueryCheck, stem
from demo.app.messages import corpus_id
from demo.app.service import DemoService
from demo.errors import InputError


def test_unknown_words_and_low_scores_are_said(app: RunningApp, client: Any) -> None:
    check = app.service.check
    assert check.known is not None and check.low_score is not None
    assert check.unknown_words("a dog running on the beach") == ["dog", "running", "beach"]
    assert check.unknown_words("a red circle slides to the left") == []  # "sliding" is in the captions
    _, _, status = client.predict("a dog running on the beach", 3, "exact", api_name="/search_text")
    assert "never saw “dog”, “running”, “beach”" in status
    _, _, status = client.predict("a small red circle moving left", 3, "exact", api_name="/search_text")
    assert "never saw" not in status


def test_the_low_score_line_comes_from_the_index() -> None:
    """Captions scored against their own videos: the 5th percentile is the line."""
    import numpy as np

    from demo.index.video_index import VideoIndex
    from demo.models.fingerprint import ModelFingerprint

    rng = np.random.default_rng(0)
    videos = rng.normal(size=(200, 16))
    captions = videos + rng.normal(scale=0.5, size=videos.shape)
    rows = [{"id": str(i), "path": f"{i}.mp4", "captions": [f"clip {i}"]} for i in range(200)]
    index = VideoIndex.from_arrays(ModelFingerprint("m", "meanP", 16, 32, 4, 1.0), videos, rows, captions,
                                   np.arange(200))
    check = QueryCheck.for_index(index, None)
    own = np.einsum("ij,ij->i", np.asarray(index.caption_embeddings, np.float32),
                    np.asarray(index.embeddings, np.float32))
    assert check.known is None and check.unknown_words("a dog") == []
    assert check.low_score == pytest.approx(np.percentile(own, 5), abs=1e-6)
    assert check.notes("anything", check.low_score - 0.01) and not check.notes("anything", check.low_score + 0.01)


def test_stems_match_the_captions_forms() -> None:
    assert stem("slides") == stem("sliding") and stem("bounces") == stem("bouncing") and stem("red") == "red"


def test_a_long_paste_is_cut_and_says_so(client: Any) -> None:
    text = "a red circle moving left " * 200  # 5,000 characters
    _, hits, status = client.predict(text, 2, "exact", api_name="/search_text")
    assert len(hits) == 2 and "cut to its first 1,000 characters" in status


def test_labels_that_do_not_suit_the_model_are_flagged(app: RunningApp) -> None:
    kinetics = app.service.label_preset("kinetics400")
    warning = app.service.label_warning(kinetics)
    assert warning is not None and "never saw" in warning and "embedded-events" in warning
    assert app.service.label_warning(app.service.label_preset("embedded-events")) is None


def test_classification_shows_what_the_numbers_mean(client: Any, clip: str) -> None:
    from gradio_client import handle_file

    top, _, notes = client.predict(handle_file(clip), "moving left, growing, bouncing", "{}", api_name="/classify")
    assert "softmax" in notes and "Raw similarity" in notes
    for label in (c["label"] for c in top["confidences"]):
        assert label in notes


def test_classification_json_carries_the_similarity(app: RunningApp, clip: str) -> None:
    result = app.service.classify(clip, "moving left, growing, bouncing")
    rows = result.to_json()["labels"]
    assert all(-1.0 <= row["similarity"] <= 1.0 for row in rows)
    assert [row["label"] for row in rows] == list(result.labels)


def test_api_is_short_and_named(app: RunningApp, client: Any) -> None:
    info = client.view_api(print_info=False, return_format="dict")
    endpoints = info["named_endpoints"]
    assert {"/search_text", "/search_video", "/classify", "/benchmark"} <= set(endpoints)
    schema = json.dumps(info)
    assert not [i for i in app.service.searcher.index.ids if i in schema], "the schema lists corpus ids"
    # Each named endpoint (search by text or image, more like this, more from a video, ...) stays small.
    sizes = {name: len(json.dumps(spec)) for name, spec in endpoints.items()}
    assert max(sizes.values()) < 6_000, f"an endpoint's schema is large: {sizes}"
    for name in ("/search_text", "/search_video", "/classify", "/benchmark"):
        labels = [r["label"] for r in endpoints[name]["returns"]]
        assert not any(label.startswith("value_") for label in labels), (name, labels)
    video = endpoints["/search_video"]["parameters"]
    assert [p["parameter_name"] for p in video] == ["video", "clip_id", "k"]
    assert all(p["parameter_has_default"] for p in video)  # an id alone is enough, a file alone too


def test_a_corpus_clip_as_the_picker_shows_it(client: Any) -> None:
    table, status = client.predict(clip_id="test-000003 · a small red square ...", api_name="/search_video")
    assert table["data"] and "test-000003" in status
    table, status = client.predict(clip_id="no-such-clip", api_name="/search_video")
    assert status.startswith("⚠️") and "no-such-clip" in status and status.count("test-0") == 0
    assert corpus_id(" test-000003 · x · y ") == "test-000003"


def test_rerun_is_the_operators_call(app: RunningApp) -> None:
    service = app.service
    assert service.can_rerun()  # a local app: the person at the keyboard is the operator
    public = DemoService(service.searcher, None, service.preset, replace(service.config, public=True))
    assert not public.can_rerun()
    with pytest.raises(InputError, match="--allow-rerun"):
        public.rerun_benchmark()
    allowed = DemoService(service.searcher, None, service.preset,
                          replace(service.config, public=True, allow_rerun=True))
    assert allowed.can_rerun()


def test_uploads_expire(app: RunningApp) -> None:
    from demo.app.ui import UPLOAD_LIFETIME

    assert app.demo.delete_cache == UPLOAD_LIFETIME and UPLOAD_LIFETIME[1] <= 24 * 3600


def test_the_stored_run_names_no_server_paths(app: RunningApp) -> None:
    from demo.presets import PRECOMPUTED

    shipped = json.loads((PRECOMPUTED / "clip4clip-world" / "eval.json").read_text())
    text = json.dumps(shipped["info"]) + shipped["markdown"]
    assert "/work/" not in text and "/home/" not in text and "/root/" not in text
    assert str(Path.cwd()) not in text


def test_benchmark_plot_legend_fits_the_figure():
    """Equal curves share one long label; it wraps, and every legend entry lies inside the figure."""
    from demo.app.benchmark import BenchmarkView
    from demo.app.format import recall_figure

    curve = [float(k) for k in range(1, 51)]
    names = ["CLIP2Video TDB+TAB", "CLIP2Video TDB+TAB, binarised + rerank100",
             "CLIP2Video TDB+TAB, binarised + rerank500"]
    rows = [{"name": n, "task": "t2v", "recall_curve": curve} for n in names]
    rows.append({"name": "CLIP4Clip meanP", "task": "t2v", "recall_curve": [c / 2 for c in curve]})
    fig = recall_figure(BenchmarkView(rows))
    fig.canvas.draw()
    legend = fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert any(" = " in label and "\n" in label for label in labels)
    assert all(len(line) <= 80 for label in labels for line in label.split("\n"))
    box, frame = legend.get_window_extent(), fig.bbox
    assert box.x0 >= frame.x0 - 1 and box.x1 <= frame.x1 + 1
