"""What the browser tests share: one headless Chromium (Playwright + /usr/bin/chromium), and checks
of what a person sees, written as page measurements."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("SCREENSHOTS_DIR", Path(__file__).resolve().parent.parent / "screenshots"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module's pages (Playwright's sync API runs once per thread)."""
    if sync_playwright is None:
        pytest.skip("playwright is not installed (pip install playwright)")
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser at {CHROMIUM} (apt-get install chromium)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


# Elements that reach past the left or right edge of the screen, unless a box that scrolls sideways
# (overflow-x auto or scroll) and fits the screen holds them: those a person can still reach.
_TOO_WIDE = """() => {
  const vw = document.documentElement.clientWidth, out = [];
  const fits = (r) => r.left >= -1 && r.right <= vw + 1;
  const scrolls = (e) => {
    for (let a = e.parentElement; a; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if ((o === 'auto' || o === 'scroll') && fits(a.getBoundingClientRect())) return true;
    }
    return false;
  };
  for (const e of document.body.querySelectorAll('*')) {
    const r = e.getBoundingClientRect(), cs = getComputedStyle(e);
    if (!r.width || !r.height || cs.visibility !== 'visible' || fits(r) || scrolls(e)) continue;
    const name = `${e.tagName.toLowerCase()}#${e.id}.${String(e.className).split(' ')[0]}`;
    out.push(`${name} ${Math.round(r.left)}..${Math.round(r.right)}`);
  }
  return {page: document.documentElement.scrollWidth, width: vw, wide: out.slice(0, 8)};
}"""


def assert_fits(page: Any, where: str) -> None:
    """Nothing on ``page`` is wider than the screen: the page does not scroll sideways and no
    element reaches past an edge (unless it sits in a box of its own that scrolls)."""
    found = page.evaluate(_TOO_WIDE)
    assert found["page"] <= found["width"] and not found["wide"], f"{where}: wider than the screen: {found}"


def on_screen(page: Any, locator: Any) -> bool:
    """Whether a person sees ``locator`` and can tap it: inside the screen, and the element at its
    centre is it (or inside it), not something covering or clipping it."""
    locator.scroll_into_view_if_needed()
    return bool(locator.evaluate("""e => {
      const r = e.getBoundingClientRect(), x = r.left + r.width / 2, y = r.top + r.height / 2;
      const inside = r.left >= 0 && r.right <= innerWidth && r.top >= 0 && r.bottom <= innerHeight;
      if (!r.width || !r.height || !inside) return false;
      const hit = document.elementFromPoint(x, y);
      return hit !== null && (hit === e || e.contains(hit));
    }"""))


def in_view(locator: Any) -> bool:
    """Whether the top of ``locator`` is on the screen now (without scrolling to it)."""
    top = locator.evaluate("e => e.getBoundingClientRect().top")
    return bool(-2 <= top < locator.page.viewport_size["height"])
