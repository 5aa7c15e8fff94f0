"""Videos named by http(s) URL (a WebVid CSV's ``contentUrl``): fetched to a temporary file,
decoded from there, deleted after.

Both index engines read through :func:`local_copy`, so a URL that cannot be fetched fails the
same way as a file that cannot be decoded: one line in ``failed.jsonl``, never the build.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from demo.errors import VideoDecodeError

SCHEMES = ("http://", "https://")
TIMEOUT_S = 60.0  # per read of the response, not for the whole file
MAX_BYTES = 1 << 30  # a "video" larger than this is refused (WebVid clips are a few MB)
_CHUNK = 1 << 20


def is_url(path: str) -> bool:
    """True for anything with a scheme (``://``); only http(s) ones can be fetched.

    >>> is_url("https://example.org/a.mp4"), is_url("clips/a.mp4")
    (True, False)
    """
    return "://" in path


def fetch(url: str, dest: Path, timeout: float = TIMEOUT_S, max_bytes: int = MAX_BYTES) -> Path:
    """Download ``url`` to the file ``dest``. Raises VideoDecodeError with one line on any failure
    (an unsupported scheme, an HTTP error, a timeout, a body over ``max_bytes``)."""
    if not url.lower().startswith(SCHEMES):
        raise VideoDecodeError(f"{url}: only http(s) URLs can be fetched")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as f:
            copied = 0
            while block := response.read(_CHUNK):
                copied += len(block)
                if copied > max_bytes:
                    raise VideoDecodeError(f"{url}: larger than {max_bytes >> 20} MiB; refused")
                f.write(block)
    except urllib.error.HTTPError as err:
        raise VideoDecodeError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise VideoDecodeError(f"{url}: cannot fetch ({reason})") from err
    return dest


@contextlib.contextmanager
def local_copy(path: str | Path) -> Iterator[str | Path]:
    """A local path for ``path``: ``path`` itself, or for a URL a temporary copy removed on exit."""
    text = str(path)
    if not is_url(text):
        yield path
        return
    folder = Path(tempfile.mkdtemp(prefix="demo-fetch-"))
    copy = folder / f"video{Path(text.split('?', 1)[0]).suffix[:8]}"
    try:
        yield fetch(text, copy)
    except VideoDecodeError as err:  # a decoder's message names the copy: name the URL instead
        raise VideoDecodeError(str(err).replace(str(copy), text)) from err
    finally:
        shutil.rmtree(folder, ignore_errors=True)
