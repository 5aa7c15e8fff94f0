"""What a person sees: headless Chromium drives the app (search, play, classify) and saves
screenshots (into $SCREENSHOTS_DIR, default <repo>/screenshots) to look at."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import N_CLIPS, launch_app

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("SCREENSHOTS_DIR", Path(__file__).resolve().parent.parent / "screenshots"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]

pytestmark = pytest.mark.browser

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, tiny_clip4clip: Path) -> Iterator[Any]:
    if sync_playwright is None:
        pytest.skip("playwright is not installed (pip install playwright)")
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser at {CHROMIUM} (apt-get install chromium)")
    app = launch_app(tmp_path_factory.mktemp("browser-app"), tiny_clip4clip)
    SHOTS.mkdir(parents=True, exist_ok=True)
    external: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda r: None if r.url.startswith(app.url) else external.append(r.url))
        page.goto(app.url)
        page.wait_for_selector("#vs-query textarea", timeout=30_000)
        page.app = app  # type: ignore[attr-defined]
        page.external = external  # type: ignore[attr-defined]
        yield page
        browser.close()
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
    page.wait_for_function("() => document.body.innerText.includes('★ own')", timeout=30_000)
    page.wait_for_timeout(400)
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
    page.wait_for_function("() => document.body.innerText.includes('CLIP4Clip (150k WebVid)')", timeout=30_000)
    page.wait_for_timeout(500)
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
