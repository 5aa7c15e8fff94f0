"""The page at a phone's width (390 px) and a desktop's (1280 px), in headless Chromium: every tab can
be reached by a tap, nothing is wider than the screen before or after results, and an example
tapped brings its results into view. Screenshots of each step go to $SCREENSHOTS_DIR (see
tests/browser_support.py)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import DESKTOP, PHONE, SHOTS, assert_fits, browser, in_view, on_screen
from conftest import RunningApp, launch_app

from demo.presets import EMBEDDED

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the fixture, imported for pytest to find

WHERE = "[scrollY, document.getElementById('vs-results').getBoundingClientRect().top, innerHeight]"
# One line of text: how many rows of glyphs an element's text takes.
LINES = "e => { const r = document.createRange(); r.selectNodeContents(e); " \
        "return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size; }"


@pytest.fixture(scope="module")
def stored_app(tmp_path_factory: pytest.TempPathFactory, tiny_clip4clip: Path) -> Iterator[RunningApp]:
    """The app with a tiny model that carries the shipped model's stored evaluations (eval.json,
    moments.json), so the Benchmark tab holds tables of the real size."""
    root = tmp_path_factory.mktemp("layout-app")
    model = shutil.copytree(tiny_clip4clip, root / "model")
    for name in ("eval.json", "moments.json"):
        shutil.copy(Path(EMBEDDED.model) / name, model / name)
    app = launch_app(root, model)
    yield app
    app.demo.close()


def _tap(page: Any, locator: Any) -> None:
    """A finger on a phone, the mouse on a desktop."""
    locator.scroll_into_view_if_needed()
    if page.viewport_size["width"] < 500:
        locator.tap()
    else:
        locator.click()


def _open(page: Any, name: str) -> None:
    """Open tab ``name`` as a person would: its button is on the screen, on top, and selects it."""
    tab = page.get_by_role("tab", name=name)
    assert tab.count() == 1 and on_screen(page, tab), f"the tab {name!r} cannot be reached"
    _tap(page, tab)
    page.wait_for_function("n => [...document.querySelectorAll('[role=tab]')].some(t => "
                           "t.innerText === n && t.getAttribute('aria-selected') === 'true')", arg=name)
    page.wait_for_timeout(400)


def _search_by_chip(page: Any) -> None:
    chip = page.locator("#vs-tries .gallery-item").first
    assert on_screen(page, chip)
    chip.evaluate("e => e.scrollIntoView({block: 'end'})")  # where it comes into sight, scrolling down
    _tap(page, chip)
    page.wait_for_selector("#vs-results video", timeout=30_000)
    page.wait_for_function("() => document.getElementById('vs-search-status').innerText.includes('encode')")
    page.wait_for_timeout(500)  # the page scrolls once the results are in
    assert in_view(page.locator("#vs-search-status")) and in_view(page.locator("#vs-results")), \
        "the results of a tapped example are out of sight: " + str(page.evaluate(WHERE))


def _describe_corpus_clip(page: Any) -> None:
    _tap(page, page.get_by_label("Pick a corpus clip"))
    page.get_by_role("option", name=re.compile(r"^test-000002 ")).click()
    page.wait_for_function("() => document.getElementById('vs-captions').innerText.includes('★ own')",
                           timeout=30_000)
    page.wait_for_timeout(500)


def _classify_example(page: Any) -> None:
    _tap(page, page.locator("#vs-classify-examples .gallery-item").first)
    page.wait_for_selector("#vs-label [data-testid='label-output-value'], #vs-label .output-class",
                           timeout=30_000)
    page.wait_for_timeout(500)
    assert in_view(page.locator("#vs-label")), "the classification of a tapped example is out of sight"


def _benchmark_tables(page: Any) -> None:
    page.wait_for_function("() => document.getElementById('vs-bench-table').innerText.includes('50.74') && "
                           "document.getElementById('vs-moment-bench').innerText.includes('mIoU')", timeout=30_000)
    page.wait_for_timeout(500)
    table = page.locator("#vs-bench-table")
    # All eleven rows show: no box around the table scrolls to hide its last one.
    assert table.get_by_text("published, WebVid-10k: binarised + rerank100", exact=True).count() == 1
    cut = table.evaluate("t => [...t.querySelectorAll('*')].filter(e => { const o = getComputedStyle(e).overflowY; "
                         "return (o === 'auto' || o === 'scroll') && e.scrollHeight > e.clientHeight + 2; }).length")
    assert cut == 0, "the benchmark table sits in a box that cuts its rows"
    for text in ("R@10", "28.00", "14.95"):  # numbers and headings whole, not broken across lines
        cell = table.get_by_text(text, exact=True).first
        assert cell.evaluate(LINES) == 1, f"{text!r} is broken across lines"
    heading = page.locator("#vs-moment-bench th", has_text="mIoU")
    assert heading.evaluate(LINES) == 1, "'mIoU' is broken across lines"


STEPS: tuple[tuple[str, str, Callable[[Any], None]], ...] = (
    ("Text → Video", "t2v", _search_by_chip),
    ("Video → Text", "v2t", _describe_corpus_clip),
    ("Zero-shot classification", "classify", _classify_example),
    ("Benchmark", "benchmark", _benchmark_tables),
)


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_every_tab_fits_the_screen(browser: Any, stored_app: RunningApp, size: str) -> None:
    page = browser.new_page(**(PHONE if size == "phone" else DESKTOP))
    try:
        page.goto(stored_app.url)
        page.wait_for_selector("#vs-query textarea", timeout=30_000)
        for name, short, act in STEPS:
            _open(page, name)
            assert_fits(page, f"{size}, {name}, before results")
            page.screenshot(path=str(SHOTS / f"layout-{size}-{short}-0.png"), full_page=True)
            act(page)
            assert_fits(page, f"{size}, {name}, after results")
            page.screenshot(path=str(SHOTS / f"layout-{size}-{short}-1.png"), full_page=True)
    finally:
        page.close()
