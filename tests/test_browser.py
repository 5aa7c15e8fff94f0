"""What a person sees: headless Chromium drives the app (search, play, classify) and saves
screenshots (into $SCREENSHOTS_DIR, default <repo>/screenshots) to look at."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import SHOTS, browser
from conftest import N_CLIPS, launch_app

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the fixture, imported for pytest to find


@pytest.fixture(scope="module")
def page(browser: Any, tmp_path_factory: pytest.TempPathFactory, tiny_clip4clip: Path) -> Iterator[Any]:
    app = launch_app(tmp_path_factory.mktemp("browser-app"), tiny_clip4clip)
    external: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("request", lambda r: None if r.url.startswith(app.url) else external.append(r.url))
    page.goto(app.url)
    page.wait_for_selector("#vs-query textarea", timeout=30_000)
    page.app = app  # type: ignore[attr-defined]
    page.external = external  # type: ignore[attr-defined]
    yield page
    page.close()
    app.demo.close()


def test_search_shows_playing_videos(page: Any) -> None:
    page.screenshot(path=str(SHOTS / "0-start.png"), full_page=True)
    page.locator("#vs-query textarea").fill("a small purple cross moving up")
    page.locator("#vs-search").click()
    page.wait_for_selector("#vs-results video", timeout=30_000)
    playable = """() => {
        const v = [...document.querySelectorAll('#vs-results video')];
        return v.length > 0 && v.every(x => x.readyState >= 2 || x.duration > 0);
    }"""
    page.wait_for_function(playable, timeout=30_000)
    state = page.evaluate("() => [...document.querySelectorAll('#vs-results video')].map(v => "
                          "({muted: v.muted, loop: v.loop, duration: v.duration}))")
    assert len(state) == N_CLIPS and all(s["muted"] and s["loop"] and s["duration"] > 0 for s in state)
    assert "encode" in page.locator(".vs-status").first.inner_text()
    page.wait_for_timeout(600)  # let the clips play a little before the picture
    page.screenshot(path=str(SHOTS / "1-text-to-video.png"), full_page=True)
    assert page.external == [], f"the page fetched from outside the app: {page.external[:5]}"


def test_empty_query_shows_a_message(page: Any) -> None:
    page.locator("#vs-query textarea").fill("")
    page.locator("#vs-search").click()
    page.wait_for_selector("#vs-results .vs-message", timeout=30_000)
    assert "Type what should happen" in page.locator("#vs-results").inner_text()


def test_video_to_text_marks_own_captions(page: Any) -> None:
    page.get_by_role("tab", name="Video → Text").click()
    pick = page.get_by_label("Pick a corpus clip")
    pick.click()
    page.get_by_role("option", name=re.compile(r"^test-000002 ")).click()
    page.wait_for_function("() => document.getElementById('vs-captions').innerText.includes('★ own')",
                           timeout=30_000)
    page.wait_for_timeout(400)
    status = page.locator("#vs-describe-status").inner_text()
    found = re.search(r"corpus clip test-000002 \((\d+) of its own captions", status)
    assert found, status
    # Each caption row: rank, score, caption, the clip it belongs to, "★ own" for the picked clip's.
    rows = page.locator("#vs-captions").evaluate(
        "t => [...t.querySelectorAll('.virtual-row')].map(r => [...r.querySelectorAll('.body-cell')]"
        ".map(c => c.innerText.trim()))")
    assert len(rows) == 10 and [r[0] for r in rows] == [str(i) for i in range(1, 11)], rows
    own = [r for r in rows if r[3] == "test-000002"]
    assert len(own) == int(found.group(1)) >= 1 and all(r[4] == "★ own" for r in own), rows
    assert all(r[4] == "" for r in rows if r[3] != "test-000002"), rows
    page.screenshot(path=str(SHOTS / "2-video-to-text.png"), full_page=True)


def test_classify_an_uploaded_clip(page: Any) -> None:
    page.get_by_role("tab", name="Zero-shot classification").click()
    clip = page.app.service.examples()[0]
    page.locator("#vs-classify-video input[type=file]").set_input_files(clip)
    page.wait_for_selector("#vs-classify-video video", timeout=30_000)
    # No click: like the Video -> Text tab, a clip is classified as soon as it arrives.
    page.wait_for_function("() => document.querySelectorAll('#vs-label [data-testid=\"label-output-value\"],"
                           " #vs-label .output-class').length > 0", timeout=30_000)
    text = page.locator("#vs-label").inner_text()
    assert any(label in text for label in ("moving", "turning", "growing", "shrinking", "bouncing",
                                           "appearing", "disappearing", "staying", "approaching", "passing"))
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / "3-classification.png"), full_page=True)


def test_benchmark_tab(page: Any) -> None:
    page.get_by_role("tab", name="Benchmark").click()
    page.wait_for_function("() => document.getElementById('vs-bench-table').innerText.includes('150k WebVid')",
                           timeout=30_000)
    page.wait_for_timeout(500)
    table = page.locator("#vs-bench-table").inner_text()
    # The tiny model was never evaluated: its row says so; the published rows carry the model card's numbers.
    assert "this model: not yet evaluated" in table
    assert "Not yet evaluated" in page.locator("#vs-bench-status").inner_text()
    for number in ("50.74", "77.30", "85.05", "14.95"):
        assert number in table
    assert page.locator("#vs-recall img").count() == 1, "no recall curve"
    assert page.locator("#vs-rerun").is_enabled()  # the app listens on 127.0.0.1 only: reruns are allowed
    page.screenshot(path=str(SHOTS / "4-benchmark.png"), full_page=True)


def test_a_non_video_upload_is_one_plain_sentence(page: Any, tmp_path: Path) -> None:
    fresh = page.context.browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        fresh.goto(page.app.url)
        fresh.wait_for_selector("#vs-query textarea", timeout=30_000)
        fresh.get_by_role("tab", name="Zero-shot classification").click()
        bad = tmp_path / "notes.mp4"
        bad.write_text("this is not a video\n")
        fresh.locator("#vs-classify-video input[type=file]").set_input_files(str(bad))
        fresh.wait_for_function("() => document.body.innerText.includes('is not a video this app can read')",
                                timeout=30_000)
        text = fresh.locator(".vs-status").filter(has_text="not a video").first.inner_text()
        assert "Errno" not in text and "/tmp" not in text and text.count("notes.mp4") == 1
        fresh.wait_for_timeout(800)
        fresh.screenshot(path=str(SHOTS / "6-not-a-video.png"), full_page=True)
        errors = fresh.locator(".toast-body.error, .toast-wrap .error").count()
        assert errors == 0, "Gradio's own error toast showed as well"
    finally:
        fresh.close()


def test_phone_screen(page: Any) -> None:
    """At 390 px nothing is wider than the screen and the Search button is on it."""
    phone = page.context.browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        phone.goto(page.app.url)
        phone.wait_for_selector("#vs-query textarea", timeout=30_000)
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        box = phone.locator("#vs-search").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        phone.locator("#vs-query textarea").fill("a small purple cross moving up")
        phone.locator("#vs-search").click()
        phone.wait_for_selector("#vs-results video", timeout=30_000)
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        cards = phone.locator("#vs-results .vs-card").evaluate_all("cs => cs.map(c => c.getBoundingClientRect().right)")
        assert cards and max(cards) <= 390
        phone.wait_for_timeout(500)
        phone.screenshot(path=str(SHOTS / "5-phone.png"), full_page=True)
    finally:
        phone.close()


# ---------------------------------------------------------------- long videos: moments


@pytest.fixture(scope="module")
def long_page(browser: Any, tmp_path_factory: pytest.TempPathFactory, tiny_clip4clip: Path) -> Iterator[Any]:
    """The app over an index of long videos (``--segment``), in a desktop-sized page."""
    from conftest import build_long_index

    root = tmp_path_factory.mktemp("browser-long")
    app = launch_app(root, tiny_clip4clip, index=build_long_index(root, tiny_clip4clip))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(app.url)
    page.wait_for_selector("#vs-query textarea", timeout=30_000)
    page.app = app  # type: ignore[attr-defined]
    yield page
    page.close()
    app.demo.close()


def _search_moments(page: Any, query: str) -> None:
    page.locator("#vs-query textarea").fill(query)
    page.locator("#vs-search").click()
    page.wait_for_selector("#vs-results video[data-start]", timeout=30_000)
    page.wait_for_function("() => [...document.querySelectorAll('#vs-results video')].every(v => v.readyState >= 2)",
                           timeout=30_000)


def _seek_lands_on_start(page: Any, button: Any, player: str) -> None:
    """Move the player away, click ``button`` and check that the player's time is then the moment's start."""
    start = float(button.get_attribute("data-seek"))
    page.evaluate("""([sel, start]) => {
        const v = document.getElementById(sel) || document.querySelector(sel);
        v.pause(); v.currentTime = start + 1.5; window.__seeked = null;
        v.addEventListener('seeked', () => { if (window.__seeked === null && v.getAttribute('data-seeked-to'))
            window.__seeked = v.currentTime; });
    }""", [player, start])
    page.wait_for_timeout(300)
    button.click()
    page.wait_for_function("() => window.__seeked !== null", timeout=10_000)
    assert page.evaluate("window.__seeked") == pytest.approx(start, abs=0.05)


def test_a_moment_plays_from_its_start_and_more_from_its_video(long_page: Any) -> None:
    from demo.evaluate.longvideos import read_parts

    video = read_parts(long_page.app.root / "long")[0]
    _search_moments(long_page, video.parts[1].caption)
    cards = long_page.evaluate("() => [...document.querySelectorAll('#vs-results video')].map(v => "
                               "({t: v.currentTime, start: +v.dataset.start, end: +v.dataset.end, muted: v.muted}))")
    assert cards and all(c["start"] - 0.1 <= c["t"] <= c["end"] + 0.5 and c["muted"] for c in cards)
    time_chip = long_page.locator("#vs-results .vs-card").first.locator(".vs-time")
    assert "–" in time_chip.inner_text()
    long_page.wait_for_timeout(500)
    long_page.screenshot(path=str(SHOTS / "7-moments.png"), full_page=True)
    long_page.locator("#vs-results [data-more]").first.click()
    long_page.wait_for_selector("#vs-more .vs-moment", timeout=30_000)
    long_page.wait_for_function("() => document.getElementById('vs-more-player').readyState >= 1", timeout=30_000)
    chips = long_page.locator("#vs-more .vs-moment")
    _seek_lands_on_start(long_page, chips.nth(chips.count() - 1), "vs-more-player")
    long_page.wait_for_timeout(400)
    long_page.locator("#vs-more").scroll_into_view_if_needed()
    long_page.screenshot(path=str(SHOTS / "8-more-from-this-video.png"), full_page=True)


def test_a_long_video_in_video_to_text_reads_as_a_timeline(long_page: Any) -> None:
    long_page.get_by_role("tab", name="Video → Text").click()
    long_page.get_by_label("Pick a corpus clip").click()
    long_page.get_by_role("option").first.click()
    long_page.wait_for_selector("#vs-timeline li", timeout=30_000)
    long_page.wait_for_function("() => document.getElementById('vs-preview-player').readyState >= 1", timeout=30_000)
    entries = long_page.locator("#vs-timeline button.vs-time")
    assert entries.count() >= 1 and entries.first.inner_text().startswith("0:00–")
    _seek_lands_on_start(long_page, entries.nth(entries.count() - 1), "vs-preview-player")
    long_page.screenshot(path=str(SHOTS / "9-timeline.png"), full_page=True)


def test_moments_fit_a_phone(long_page: Any) -> None:
    from demo.evaluate.longvideos import read_parts

    phone = long_page.context.browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        phone.goto(long_page.app.url)
        phone.wait_for_selector("#vs-query textarea", timeout=30_000)
        _search_moments(phone, read_parts(long_page.app.root / "long")[1].parts[0].caption)
        phone.locator("#vs-results [data-more]").first.click()
        phone.wait_for_selector("#vs-more .vs-moment", timeout=30_000)
        phone.wait_for_timeout(500)
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        right = phone.locator("#vs-more .vs-moment, #vs-results .vs-card").evaluate_all(
            "els => els.map(e => e.getBoundingClientRect().right)")
        assert right and max(right) <= 390
        phone.screenshot(path=str(SHOTS / "10-moments-phone.png"), full_page=True)
    finally:
        phone.close()
