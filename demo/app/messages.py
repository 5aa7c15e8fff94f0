"""What a person reads when something they did cannot work: one plain sentence, no internals.

Errors from the library name files by the server's paths and carry the decoder's errno; the
page shows the file's own name and the reason in words. Corpus clip ids are accepted the way
the picker shows them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from demo.errors import DemoError, VideoDecodeError


def corpus_id(text: str | None) -> str:
    """A corpus clip id as typed or as the picker shows it (``test-000025 · a red circle ...``).

    >>> corpus_id(" test-000025 · a small red circle moving left ")
    'test-000025'
    """
    return (text or "").split(" · ", 1)[0].strip()


ERRNO = re.compile(r"\[Errno -?\d+\]\s*")


def plain_message(err: DemoError, path: str) -> str:
    """The error in one plain sentence: no errno, no server folder, no quoted temp path.

    >>> plain_message(VideoDecodeError("/tmp/u/a.mp4: not a readable video ([Errno 1094995529] Invalid data "
    ...     "found when processing input: '/tmp/u/a.mp4')"), "/tmp/u/a.mp4").split(". ")[0]
    'a.mp4 is not a video this app can read (invalid data found when processing input)'
    """
    name = Path(path).name
    text = ERRNO.sub("", str(err)).replace(str(Path(path).parent) + os.sep, "")
    text = re.sub(r":\s*'[^']*'", "", text)
    if isinstance(err, VideoDecodeError) and "not a readable video" in text:
        reason = text.split("(", 1)[1].rstrip(")").strip() if "(" in text else "unknown format"
        return (f"{name} is not a video this app can read ({reason[:1].lower()}{reason[1:]}). "
                "Upload an mp4, webm, mov or mkv clip.")
    return text


def friendly(path: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; an error a person caused comes back as one plain sentence (:func:`plain_message`)."""
    try:
        return fn()
    except DemoError as err:
        raise type(err)(plain_message(err, path)) from err
