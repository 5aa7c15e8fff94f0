"""The app over an index of long videos, through its API: moments with start and end, "more from
this video", "more like this", image queries and the timeline of a long video."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LONG_VIDEOS, RunningApp, build_long_index, launch_app

from demo.evaluate.longvideos import part_frame, read_parts


@pytest.fixture(scope="module")
def long_app(tmp_path_factory: pytest.TempPathFactory, tiny_clip4clip: Path) -> Iterator[RunningApp]:
    root = tmp_path_factory.mktemp("long-app")
    running = launch_app(root, tiny_clip4clip, index=build_long_index(root, tiny_clip4clip))
    yield running
    running.demo.close()


@pytest.fixture(scope="module")
def long_client(long_app: RunningApp) -> Any:
    from gradio_client import Client

    return Client(long_app.url, verbose=False)


def test_new_endpoints_are_named(long_client: Any) -> None:
    names = set(long_client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/search_text", "/search_image", "/more_like_this", "/more_from_video", "/search_video"} <= names


def test_search_returns_moments_that_play_from_their_start(long_app: RunningApp, long_client: Any) -> None:
    import httpx

    videos = read_parts(long_app.root / "long")
    part = videos[0].parts[1]
    html, hits, status = long_client.predict(part.caption, 5, "exact", 1, api_name="/search_text")
    assert len(hits) == LONG_VIDEOS and len({h["id"] for h in hits}) == LONG_VIDEOS  # one per video
    # A moment is described by a part of its video (one of the video's captions), not by the video's title.
    parts = {v.id: {p.caption for p in v.parts} for v in videos}
    assert all(h["caption"] in parts[h["id"]] for h in hits), hits
    assert "moments from 3 videos" in status
    for h in hits:
        assert h["end"] > h["start"] >= 0 and h["window"].startswith(h["id"] + "@")
        assert f'data-start="{h["start"]:g}"' in html and f'#t={h["start"]:g},{h["end"]:g}' in html
        assert h["video"] == f"media/{h['id']}"
        assert httpx.get(long_app.url + h["video"]).status_code == 200
    assert "0:0" in html and "More from this video" in html and "More like this" in html
    _, more, _ = long_client.predict(part.caption, 9, "exact", 3, api_name="/search_text")
    assert len(more) > LONG_VIDEOS


def test_more_from_this_video_lists_its_moments_in_time_order(long_app: RunningApp, long_client: Any) -> None:
    video = read_parts(long_app.root / "long")[1]
    html = long_client.predict(video.parts[0].caption, video.id, api_name="/more_from_video")
    assert f"More from {video.id}" in html and 'id="vs-more-player"' in html
    starts = [float(x.split('"')[0]) for x in html.split('class="vs-moment" data-seek="')[1:]]
    assert starts == sorted(starts) and starts
    assert "no video with id" in long_client.predict(video.parts[0].caption, "no-such-video",
                                                     api_name="/more_from_video")
    message = long_client.predict("", video.id, api_name="/more_from_video")
    assert "query is empty" in message


def test_more_like_this_and_image_queries(long_app: RunningApp, long_client: Any, tmp_path: Path) -> None:
    from PIL import Image

    video = read_parts(long_app.root / "long")[2]
    _, hits, _ = long_client.predict(video.parts[0].caption, 5, "exact", 1, api_name="/search_text")
    _, like, status = long_client.predict(hits[0]["window"], 5, "exact", 1, api_name="/more_like_this")
    assert like and "more like" in status and hits[0]["window"] not in {h["window"] for h in like}
    Image.fromarray(part_frame(video.parts[1])).save(tmp_path / "frame.png")
    from gradio_client import handle_file

    _, found, status = long_client.predict(handle_file(str(tmp_path / "frame.png")), 5, "exact", 1,
                                           api_name="/search_image")
    assert found and all("start" in h for h in found) and "the image frame.png" in status
    from gradio_client.exceptions import AppError

    (tmp_path / "bad.png").write_text("no picture here")
    with pytest.raises(AppError):  # Gradio's image component refuses it before the app sees it
        long_client.predict(handle_file(str(tmp_path / "bad.png")), 5, "exact", 1, api_name="/search_image")
    html, found, status = long_client.predict(None, 5, "exact", 1, api_name="/search_image")
    assert found == [] and "Upload a photo" in html


def test_a_long_video_gets_a_timeline(long_app: RunningApp, long_client: Any) -> None:
    from gradio_client import handle_file

    videos = read_parts(long_app.root / "long")
    table, status = long_client.predict(None, videos[0].id, 5, api_name="/search_video")
    assert all(row[3] in {v.id for v in videos} for row in table["data"])  # captions name videos, not windows
    timeline = long_client.predict(None, videos[0].id, api_name="/timeline")
    assert "Timeline" in timeline and timeline.count("<li>") >= 1 and "0:00–" in timeline
    assert 'data-player="vs-preview-player"' in timeline
    upload = long_app.root / "long" / f"{videos[0].id}.mp4"
    timeline = long_client.predict(handle_file(str(upload)), "", api_name="/timeline")
    assert "Timeline" in timeline and "#vs-describe-video video" in timeline  # an upload longer than one window
    assert long_client.predict(handle_file(long_app.service.examples()[0]), "", api_name="/timeline") == ""


def test_the_picker_lists_long_videos_once(long_app: RunningApp) -> None:
    choices = long_app.service.corpus_choices()
    assert [c[1] for c in choices] == [v.id for v in read_parts(long_app.root / "long")]
    assert all("scenes" in label for label, _ in choices)
    assert long_app.service.info()["long_videos"] == LONG_VIDEOS


def test_the_explorer_is_a_component_with_what_it_needs(long_app: RunningApp) -> None:
    """The moment actions live in an Explorer built from a searcher and two functions, not in a
    mixin that expects them of the service: one built here by hand answers like the app's."""
    from demo.app.explore import Explorer
    from demo.errors import InputError

    service = long_app.service
    assert not isinstance(service, Explorer) and service.explorer.searcher is service.searcher

    def no_uploads(video: str | None) -> str:
        raise InputError("no uploads here")

    explorer = Explorer(service.searcher, lambda clip_id: f"clips/{clip_id}", no_uploads)
    video = read_parts(long_app.root / "long")[1]
    mine = explorer.more_from_video(video.parts[0].caption, video.id)
    theirs = service.more_from_video(video.parts[0].caption, video.id)
    assert mine.src == f"clips/{video.id}" and [m.start for m in mine.moments] == [m.start for m in theirs.moments]
    assert explorer.long_videos() and explorer.corpus_size() == LONG_VIDEOS
    with pytest.raises(InputError, match="no uploads here"):
        explorer.timeline("some.mp4")
