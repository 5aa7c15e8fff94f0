"""What every command shares: JSON output, the model/index arguments, one line per hit."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from demo.presets import POOLING_CHOICES


def print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, ensure_ascii=False, default=str))


def model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="embedded (default, offline) or webvid; env DEMO_PRESET")
    p.add_argument("--model", help="CLIP4Clip checkpoint folder or hub id (default: the index's model)")
    p.add_argument("--pooling", choices=POOLING_CHOICES, help="override the checkpoint's pooling")
    p.add_argument("--index", help="index folder (default: the preset's)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")


def print_hits(hits: Sequence[Any], as_json: bool, files: dict[str, str | None] | None = None) -> None:
    """One line per hit (or JSON); ``files`` maps ids to what plays them (a file or URL; None:
    the clip is missing), shown instead of the index's stored path. A moment shows its times."""
    from demo.index.segments import format_span
    from demo.search.searcher import hit_to_dict

    rows = [hit_to_dict(h) for h in hits]
    if files is not None:
        rows = [{**row, "file": files.get(row["id"])} for row in rows]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        where = row.get("file") or (row.get("path_or_url", "") + " (missing)" if "file" in row else "") or row["id"]
        if "start" in row:  # a moment: when, and which video (its title, else its first caption)
            what = f"{format_span(row['start'], row['end'])}  {row['id']}: {row.get('title') or row['caption']}"
        else:
            what = row["caption"]
        print(f"{row['rank']:>3}  {row['score']:.4f}  {what}  [{where}]")
