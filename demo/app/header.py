"""The page header: what is loaded, and what the embedded model can understand."""

from __future__ import annotations

import html
import re
from typing import Any

VOCAB_KINDS = (("colours", "colours"), ("shapes", "shapes"), ("sizes", "sizes"), ("events", "events"),
               ("relations", "two objects"), ("backgrounds", "backgrounds"))


# A path with at least one folder, absolute or relative ("/srv/models/x", "./idx/a", "~/m"): its last part is shown.
_PATH = re.compile(r"(?<![\w.:/])(?:~|\.{1,2})?(?:/[\w.@+\-]+)+/([\w.@+\-]+)/?")


def without_folders(text: str) -> str:
    """``text`` with every file path cut to its last part: the page (and Gradio's ``/config``, which
    holds it) names models and indexes, never the server's folders. Hub ids (``org/name``) stay.

    >>> without_folders("/srv/data/indexes/world and ../models/clip4clip-world, not Searchium-ai/clip4clip")
    'world and clip4clip-world, not Searchium-ai/clip4clip'
    """
    return _PATH.sub(r"\1", text)


def _chip(key: str, value: str, title: str = "") -> str:
    title, value = without_folders(title), without_folders(value)
    tip = f' title="{html.escape(title)}"' if title else ""
    return f'<span class="vs-chip"{tip}><b>{html.escape(key)}</b> {html.escape(value)}</span>'


def _contents(info: dict[str, Any]) -> str:
    """What the index holds: videos, or long videos as windows (``--segment``)."""
    segments = info.get("segments")
    if segments:
        return (f"{int(info.get('long_videos') or 0):,} long videos as {int(info['videos']):,} windows of "
                f"{segments['segment']:g} s")
    return f"{int(info['videos']):,} videos"


def header_html(info: dict[str, Any], vocabulary: dict[str, list[str]] | None, device: str) -> str:
    """Title, one chip per loaded thing, and (for the embedded world) its whole vocabulary."""
    xclip = info.get("xclip") or "not loaded"
    chips = [
        _chip("preset", str(info["preset"]), str(info.get("preset_description") or "")),
        _chip("CLIP4Clip", f"{info['model_source_name']} · {info['pooling']} · {info['frames']} frames",
              str(info["model"])),
        _chip("index", f"{info['index_name']} · {_contents(info)} · {int(info['captions']):,} captions",
              str(info["index"])),
        *([_chip("source", str(info["index_source"]))] if info.get("index_source") else []),  # a fetched hub set
        *([_chip("video → text", "captions of the nearest videos", str(info["video_to_text"]))]
          if not int(info["captions"]) and info.get("video_to_text") else []),
        _chip("X-CLIP", str(xclip), str(info.get("xclip_error") or "")),
        _chip("device", device),
    ]
    parts = [
        '<div class="vs-head">',
        '<div class="vs-title"><h1>Video search</h1>',
        "<p>Find clips from a sentence, describe a clip in words, and label it zero-shot — "
        "with CLIP4Clip and X-CLIP.</p></div>",
        f'<div class="vs-chips">{"".join(chips)}</div>',
    ]
    if vocabulary:
        rows = "".join(
            f"<div><dt>{html.escape(label)}</dt><dd>{html.escape(', '.join(vocabulary.get(key, [])))}</dd></div>"
            for key, label in VOCAB_KINDS
        )
        parts.append(
            '<details class="vs-vocab" open><summary>What the embedded model knows: a rendered world of '
            "coloured shapes in motion, and nothing else (it has never seen a dog).</summary>"
            f"<dl>{rows}</dl></details>"
        )
    parts.append("</div>")
    return "".join(parts)
