"""The one way this project writes a result file: atomically, and a Markdown section at a time.

Every command that writes a report, a model card, a manifest or a cache entry goes through
:func:`atomic_write` (a reader sees the old file or the new one, never half of either), and
every command that updates part of a Markdown document (BENCHMARKS.md, a model card) through
:func:`replace_section` / :func:`write_section`, which keep everything outside the marked
section byte for byte.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

_COUNTER = iter(range(1 << 62))
_COUNTER_LOCK = threading.Lock()


def _temp_name(path: Path) -> Path:
    """A hidden sibling no other writer (thread or process) picks at the same time."""
    with _COUNTER_LOCK:
        n = next(_COUNTER)
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}-{n}.tmp")


def atomic_write(path: str | Path, data: bytes | str, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and one rename.

    Text is written as UTF-8. With ``fsync`` the bytes reach the disk before the rename, so a
    crash leaves the old file or the new one. The parent folder is created. On any error the
    temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as f:
            f.write(payload)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_json(path: str | Path, payload: Any, *, indent: int | None = 2) -> Path:
    """``payload`` as JSON (non-JSON values through ``str``), atomically, with a final newline."""
    return atomic_write(path, json.dumps(payload, indent=indent, ensure_ascii=False, default=str) + "\n")


def markers(name: str) -> tuple[str, str]:
    """The HTML comments that delimit section ``name`` of a Markdown document.

    >>> markers("bench:main")
    ('<!-- bench:main -->', '<!-- /bench:main -->')
    """
    return f"<!-- {name} -->", f"<!-- /{name} -->"


def replace_section(document: str, name: str, body: str) -> str:
    """``document`` with the text between section ``name``'s markers replaced by ``body``; the
    section is appended when the markers are missing. Text outside the markers is kept as is.

    >>> replace_section("# B\\n<!-- evaluate:x -->\\nold\\n<!-- /evaluate:x -->\\ntail\\n", "evaluate:x", "new\\n")
    '# B\\n<!-- evaluate:x -->\\nnew\\n<!-- /evaluate:x -->\\ntail\\n'
    >>> replace_section("# B\\n", "s", "body")
    '# B\\n\\n<!-- s -->\\nbody\\n<!-- /s -->\\n'
    """
    begin, end = markers(name)
    section = f"{begin}\n{body.rstrip()}\n{end}"
    start = document.find(begin)
    stop = document.find(end, start + len(begin)) if start >= 0 else -1
    if start >= 0 and stop > start:
        return document[:start] + section + document[stop + len(end):]
    return document.rstrip() + ("\n\n" if document.strip() else "") + section + "\n"


def has_section(document: str, name: str) -> bool:
    """Whether ``document`` holds both markers of section ``name``, in order.

    >>> has_section("a\\n<!-- s -->\\nx\\n<!-- /s -->\\n", "s"), has_section("a\\n<!-- s -->\\n", "s")
    (True, False)
    """
    begin, end = markers(name)
    start = document.find(begin)
    return start >= 0 and document.find(end, start + len(begin)) > start


def write_section(path: str | Path, name: str, body: str, title: str = "# Benchmarks") -> Path:
    """Replace section ``name`` of the Markdown file ``path`` (created with ``title`` when missing).
    The file is read as bytes, so its line endings outside the section stay as they were."""
    path = Path(path)
    old = path.read_bytes().decode("utf-8") if path.is_file() else f"{title}\n"
    return atomic_write(path, replace_section(old, name, body))


# A model card's section that `python -m demo evaluate` rewrites (training writes the card, evaluation its results).
RESULTS_HEADING = "## Test-split results (`python -m demo evaluate`)"


def set_card_results(card: str | Path, markdown: str) -> bool:
    """Replace the body of a model card's test-split section with ``markdown``.

    Returns False (and writes nothing) when the card is missing or has no such section.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "README.md"
    >>> _ = path.write_text(f"# m\\n\\n{RESULTS_HEADING}\\n\\nold\\n\\n## Limitations\\n\\nx\\n")
    >>> set_card_results(path, "| R@1 |")
    True
    >>> path.read_text().split("\\n")[2:8]
    ['## Test-split results (`python -m demo evaluate`)', '', '| R@1 |', '', '## Limitations', '']
    """
    path = Path(card)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    start = text.find(RESULTS_HEADING)
    if start < 0:
        return False
    body = start + len(RESULTS_HEADING)
    stop = text.find("\n## ", body)
    rest = text[stop + 1:] if stop >= 0 else ""
    atomic_write(path, f"{text[:body]}\n\n{markdown.strip()}\n\n{rest}")
    return True
