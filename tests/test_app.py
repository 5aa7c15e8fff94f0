"""The Gradio app through its API: launched in-process on 127.0.0.1 with tiny random models
and a small embedded-world index built here, called with gradio_client like any user."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import N_CLIPS, RunningApp, bad_files, launch_app

from demo.app.service import AppConfig, DemoService
from demo.errors import InputError, VideoDecodeError


def test_named_endpoints(client: Any) -> None:
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/search_text", "/search_video", "/classify", "/benchmark"} <= names


def test_search_text_returns_playable_clips(app: RunningApp, client: Any) -> None:
    import httpx

    html, hits, status = client.predict("a small purple cross moving up", 3, "exact", api_name="/search_text")
    assert html.count("<video") == 3 and "autoplay" in html and "muted" in html
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert all(h["id"].startswith("test-") and h["caption"] for h in hits)
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert "encode" in status and "ms" in status
    # Each clip plays from the app's media route, by id; a world clip is rendered into the cache
    # when first asked for, byte for byte what `python -m demo synth` writes.
    cache = app.root / "cache"
    for h in hits:
        assert h["video"] == f"media/{h['id']}"
        response = httpx.get(app.url + h["video"])
        assert response.status_code == 200 and response.content[4:8] == b"ftyp"
        assert response.headers["content-type"] == "video/mp4"
        assert response.content == (cache / "clips" / "test" / f"{h['id']}.mp4").read_bytes()
    from demo.world import WorldConfig, synth

    synth(app.root / "synth", WorldConfig(), splits=("test",), limit=N_CLIPS, progress=False)
    assert response.content == (app.root / "synth" / "clips" / "test" / f"{hits[-1]['id']}.mp4").read_bytes()
    # Players seek with range requests.
    part = httpx.get(app.url + hits[0]["video"], headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.content) == 100
    # Nothing outside the index's clips: no index file, no unknown id, no path tricks.
    assert httpx.get(f"{app.url}gradio_api/file={app.root / 'index' / 'manifest.json'}").status_code == 403
    for probe in ("media/nope", "media/../index/manifest.json", "media/%2E%2E/%2E%2E/etc/passwd"):
        assert httpx.get(app.url + probe).status_code == 404, probe


def test_binary_search_and_top_k(client: Any) -> None:
    _, hits, status = client.predict("a red circle", 24, "binary + rerank", api_name="/search_text")
    assert len(hits) == N_CLIPS  # k is capped by the corpus size
    assert "binary + rerank" in status


def test_empty_query_is_a_message(client: Any) -> None:
    html, hits, status = client.predict("   ", 5, "exact", api_name="/search_text")
    assert hits == [] and "vs-message" in html and "Type what should happen" in html and status == ""


def test_search_video_with_corpus_clip_marks_its_captions(client: Any) -> None:
    table, status = client.predict(None, "test-000003", 24, api_name="/search_video")
    assert table["headers"][:3] == ["Rank", "Score", "Caption"]
    rows = table["data"]
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    own = [r for r in rows if r[3] == "test-000003"]
    assert own and all(r[4] == "★ own" for r in own)
    assert all(r[4] == "" for r in rows if r[3] != "test-000003")
    assert "test-000003" in status


def test_search_video_with_upload(client: Any, clip: str) -> None:
    from gradio_client import handle_file

    table, status = client.predict(handle_file(clip), None, 4, api_name="/search_video")
    assert len(table["data"]) == 4 and "encode" in status


def test_an_upload_is_a_corpus_clip_by_content_not_by_name(app: RunningApp, client: Any, clip: str,
                                                           tmp_path: Path) -> None:
    import shutil

    from gradio_client import handle_file

    corpus = app.service.media_file("test-000003")
    assert corpus is not None
    same = shutil.copy(corpus, tmp_path / "test-000003.mp4")
    table, status = client.predict(handle_file(str(same)), None, 24, api_name="/search_video")
    assert "corpus clip **test-000003**" in status and any(r[4] == "★ own" for r in table["data"])
    # Another clip under a corpus clip's name is the person's own clip.
    (tmp_path / "other").mkdir()
    impostor = shutil.copy(clip, tmp_path / "other" / "test-000003.mp4")
    table, status = client.predict(handle_file(str(impostor)), None, 24, api_name="/search_video")
    assert "your clip" in status and "test-000003" not in status, status
    assert all(r[4] == "" for r in table["data"])


def test_sessions_held_stay_bounded_under_raw_api_calls(app: RunningApp, tmp_path: Path, tiny_clip4clip: Path) -> None:
    """Every raw /gradio_api/call request is a session of its own, and Gradio keeps each session's
    state (a copy of the page's component settings): the app holds at most ``max_sessions``."""
    import httpx

    assert AppConfig().max_sessions <= 1000
    running = launch_app(tmp_path, tiny_clip4clip, index=app.root / "index", max_sessions=12)
    try:
        def call(_: int) -> str:
            route = running.url + "gradio_api/call/search_text"
            posted = httpx.post(route, json={"data": ["", 5, "exact", 1]})
            with httpx.stream("GET", f"{route}/{posted.json()['event_id']}") as events:
                return next(line for line in events.iter_lines() if line.startswith("event: "))

        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(call, range(40)))
        assert outcomes == ["event: complete"] * 40
        held = running.demo.state_holder.session_data
        assert 0 < len(held) <= 12, len(held)
    finally:
        running.demo.close()


def test_classify_returns_top5_and_bars(client: Any, clip: str) -> None:
    from gradio_client import handle_file

    labels = "moving left, moving right, growing, shrinking, bouncing, turning clockwise"
    top, bars, notes = client.predict(handle_file(clip), labels, "a video of {}", api_name="/classify")
    confidences = top["confidences"]
    assert len(confidences) == 5
    assert {c["label"] for c in confidences} <= set(labels.split(", "))
    assert sorted((c["confidence"] for c in confidences), reverse=True) == [c["confidence"] for c in confidences]
    assert [row[0] for row in bars["data"]] == [c["label"] for c in confidences]
    assert "6" in notes  # "Scored 6 labels"


def test_classify_single_label_has_a_note(client: Any, clip: str) -> None:
    from gradio_client import handle_file

    top, _, notes = client.predict(handle_file(clip), "growing", "{}", api_name="/classify")
    assert top["label"] == "growing" and "only one label" in notes


@pytest.mark.parametrize("endpoint", ["/search_video", "/classify"])
def test_bad_uploads_are_messages(app: RunningApp, client: Any, endpoint: str) -> None:
    from gradio_client import handle_file

    for kind, path in bad_files(app.root / "bad").items():
        if endpoint == "/classify":
            top, bars, message = client.predict(handle_file(str(path)), "a, b", "{}", api_name=endpoint)
            assert not top and not (bars or {}).get("data")
        else:
            table, message = client.predict(handle_file(str(path)), None, 5, api_name=endpoint)
            assert table["data"] in ([], [[]], [["", "", "", "", ""]]) or not any(table["data"][0])
        assert message.startswith("⚠️"), (kind, message)
        assert str(app.root) not in message  # names the file, not the server's folders
    # ... and the app keeps serving.
    _, hits, _ = client.predict("a green star", 2, "exact", api_name="/search_text")
    assert len(hits) == 2


def test_missing_inputs_are_messages(client: Any, clip: str) -> None:
    from gradio_client import handle_file

    assert "labels" in client.predict(handle_file(clip), " , ", "{}", api_name="/classify")[2].lower()
    assert "upload" in client.predict(None, "moving left", "{}", api_name="/classify")[2].lower()
    assert "upload" in client.predict(None, None, 5, api_name="/search_video")[1].lower()
    bad_template = client.predict(handle_file(clip), "a, b", "no placeholder", api_name="/classify")[2]
    assert bad_template.startswith("⚠️") and "template" in bad_template


def test_upload_limits(app: RunningApp, clip: str) -> None:
    service = app.service
    short = DemoService(service.searcher, None, service.preset, replace(service.config, max_duration_s=0.5))
    with pytest.raises(InputError, match="limit is 0.5 s"):
        short.check_upload(clip)
    small = DemoService(service.searcher, None, service.preset, replace(service.config, max_upload_mb=0.001))
    with pytest.raises(InputError, match="MB"):
        small.check_upload(clip)
    with pytest.raises(VideoDecodeError):
        service.check_upload(str(app.root / "nowhere.mp4"))
    with pytest.raises(InputError, match="unavailable"):
        short.classify(clip, "a, b")


def test_twenty_concurrent_searches(app: RunningApp) -> None:
    from gradio_client import Client

    client = Client(app.url, verbose=False)
    queries = [f"a {c} square moving {d}" for c in ("red", "green", "blue", "pink", "white")
               for d in ("left", "right", "up", "down")]
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda q: client.predict(q, 4, "binary + rerank", api_name="/search_text"),
                                queries))
    assert len(results) == 20
    assert all(len(hits) == 4 and html.count("<video") == 4 for html, hits, _ in results)


def test_benchmark_reads_and_reruns(app: RunningApp, client: Any) -> None:
    table, plot, status, details = client.predict(api_name="/benchmark")
    assert table["headers"] == ["Model", "R@1", "R@5", "R@10", "MdR", "MnR"]
    names = [row[0] for row in table["data"]]
    assert names[0] == "this model: not yet evaluated" and "Not yet evaluated" in status
    assert any("CLIP4Clip (150k WebVid)" in n for n in names)
    published = next(r for r in table["data"] if "150k WebVid" in r[0])
    assert published[1:] == ["50.74", "77.30", "85.05", "1", "14.95"]
    assert plot is not None

    # A fresh clone's cache after app start: the index's clips rendered (app.py's prerender), no
    # test.jsonl, so the rerun renders the test split itself, inside its own (daemonic) process.
    app.service.prerender()
    cache = app.service.config.cache_path()
    assert len(list((cache / "clips" / "test").glob("*.mp4"))) == N_CLIPS and not (cache / "test.jsonl").exists()
    table, _, status, details = client.predict(api_name="/rerun_benchmark")
    assert "failed" not in status, status
    rows = [r for r in table["data"] if not r[0].startswith("published")]
    assert rows and all(r[1] != "–" for r in rows), table
    assert all(0 <= float(r[1]) <= 100 for r in rows)
    assert "6 videos" in status and "Retrieval" in details
    stored = json.loads(app.service.eval_files()[1].read_text())
    assert {r["task"] for r in stored["rows"]} >= {"t2v", "v2t"}


def test_missing_index_stops_app_py_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("app_main", Path(__file__).resolve().parent.parent / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--index", str(tmp_path / "nowhere"), "--port", "7999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: index folder") and "nowhere" in err[0]


def test_example_queries_speak_the_world_language() -> None:
    from demo.app.ui import WORLD_QUERIES
    from demo.world import vocabulary

    vocab = vocabulary()
    words = {w for key in ("shapes", "colours", "sizes", "backgrounds") for w in vocab[key]}
    phrases = [p for key in ("event_phrases", "relation_phrases") for p in vocab[key]]
    glue = {"a", "an", "the", "and", "on", "background"}
    for query in WORLD_QUERIES:
        rest = query
        for phrase in sorted(phrases, key=len, reverse=True):
            rest = rest.replace(phrase, " ")
        unknown = [w for w in rest.split() if w not in words | glue]
        assert not unknown, (query, unknown)


# What each example chip asks for: (size or None, colour, shape, event) of one object in the clip.
EXAMPLE_ASKS = {
    "a green star drifting left": (None, "green", "star", "moving left"),
    "a large white square sliding to the left": ("large", "white", "square", "moving left"),
    "a purple cross shrinking": (None, "purple", "cross", "shrinking"),
    "a blue circle bouncing": (None, "blue", "circle", "bouncing"),
    "a pink triangle and a purple circle approaching each other": (None, "pink", "triangle", None),
    "a large orange diamond fading out": ("large", "orange", "diamond", "disappearing"),
    "a small yellow hexagon heading left": ("small", "yellow", "hexagon", "moving left"),
    "a red heart getting bigger": (None, "red", "heart", "growing"),
}


@pytest.mark.slow
def test_example_chips_find_their_clips_with_the_shipped_model() -> None:
    from demo.app.ui import WORLD_QUERIES
    from demo.index.video_index import VideoIndex
    from demo.models.encoders import Clip4ClipEncoder
    from demo.presets import PRECOMPUTED

    assert set(WORLD_QUERIES) == set(EXAMPLE_ASKS)
    encoder = Clip4ClipEncoder.from_pretrained(PRECOMPUTED / "clip4clip-world")
    index = VideoIndex.load(PRECOMPUTED / "index-world")

    def matches(attributes: dict[str, Any], ask: tuple[str | None, str, str, str | None]) -> bool:
        size, colour, shape, event = ask
        if event is None and attributes.get("relation") != "approaching":
            return False
        return any(o["colour"] == colour and o["shape"] == shape and size in (None, o["size"])
                   and event in (None, o["event"]) for o in attributes["objects"])

    for query, hits in zip(WORLD_QUERIES, index.search(encoder.encode_texts(list(WORLD_QUERIES)), k=3), strict=True):
        assert any(matches(hit.metadata["attributes"], EXAMPLE_ASKS[query]) for hit in hits), (
            query, [hit.caption for hit in hits])
