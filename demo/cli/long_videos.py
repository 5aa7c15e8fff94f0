"""The commands for long videos, which ``demo.cli`` hands over to: a segmented build's report,
timelines, the long test videos and the moment evaluation (heavy imports inside functions)."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from demo.cli.common import print_json
from demo.errors import DemoError
from demo.evaluate.longvideos import LongVideoConfig, compose, write_long_videos
from demo.index.items import VIDEO_EXTENSIONS
from demo.index.segment_build import build_segment_index
from demo.index.segments import format_span
from demo.search.moments import MERGE_MARGIN
from demo.search.timeline import TimelineEntry, timeline_text
from demo.video.windows import SegmentSpec


def build_segments(args: argparse.Namespace, items: Any, encoder: Any, spec: Any, model: str, media_root: Any) -> int:
    report = build_segment_index(items, args.out, encoder, spec, batch_size=args.batch_size or 32,
                                 overwrite=args.overwrite, model_path=model, media_root=media_root,
                                 retry_failed=args.retry_failed)
    resumed = f" ({report.resumed_from} windows already done before this run)" if report.resumed_from else ""
    print(f"indexed {report.videos} videos ({report.seconds / 60:.1f} min) as {report.windows} windows "
          f"({spec.describe()}) into {args.out}{resumed}")
    for part in report.skipped_windows:
        spans = ", ".join(format_span(s, e) for s, e in part.spans)
        print(f"  {part.path}: skipped {len(part.spans)} window(s) ({spans}): {part.reason}; the rest is indexed")
    print_skipped(report.skipped, report.not_retried)
    return 0


def print_skipped(skipped: list[tuple[str, str]], not_retried: list[tuple[str, str]]) -> None:
    if skipped:
        print(f"skipped {len(skipped)} file(s) that could not be decoded:")
        for path, reason in skipped:
            print(f"  {path}: {reason}")
    if not_retried:
        print(f"{len(not_retried)} of them failed in an earlier run and were not tried again (unchanged "
              "since); pass --retry-failed to try them anyway")


def print_not_videos(files: list[Any]) -> None:
    """The files a folder build left out for their extension (a video must end in one of
    :data:`demo.index.items.VIDEO_EXTENSIONS`)."""
    if files:
        kinds = " ".join(sorted(VIDEO_EXTENSIONS))
        print(f"skipped {len(files)} file(s) that are not videos (a video ends in one of {kinds}):")
        for path in files:
            print(f"  {path}")


def evaluate_moments(args: argparse.Namespace) -> int:
    from demo.evaluate.moment_retrieval import MomentRequest, publish_moments, run_moments, save_moments
    from demo.evaluate.suites import CLIP4CLIP_WORLD

    specs = tuple(SegmentSpec.of(*(float(x) for x in w.split(":"))) for w in args.windows)
    if args.write_benchmarks and (args.split != "test" or args.long_videos != 24):
        raise DemoError("--write-benchmarks publishes the default test composition only (--split test, 24 videos)")
    request = MomentRequest(model=args.clip4clip or CLIP4CLIP_WORLD, videos=LongVideoConfig(
        videos=args.long_videos, split=args.split), specs=tuple(s for s in specs if s is not None),
        margins=tuple(args.margins or (MERGE_MARGIN,)), hour=args.hour, device=args.device,
        command=shlex.join(["python", "-m", "demo", *sys.argv[1:]]))
    result = run_moments(request)
    written = save_moments(result, args.out or "results/evaluate-moments")
    if args.write_benchmarks:
        written += publish_moments(result, request.model, args.benchmarks)
    if args.json:
        print_json(result.to_json())
    else:
        print(result.to_markdown())
        print("wrote " + ", ".join(str(p) for p in written))
    return 0


def print_timeline(entries: list[TimelineEntry], as_json: bool) -> None:
    """A timeline one stretch per line (or JSON: start, end, caption, score, and why one was skipped)."""
    if as_json:
        print_json([{"start": e.start, "end": e.end, "caption": e.caption, "score": round(e.score, 6),
                      **({"skipped": e.note} if e.note else {})} for e in entries])
    else:
        print(timeline_text(entries).replace("; ", "\n"))


def synth_long(args: argparse.Namespace) -> int:
    """``synth --long N``: N long test videos and the CSV that indexes them."""
    videos = compose(LongVideoConfig(videos=args.long, seed=args.seed))
    csv = write_long_videos(args.out, videos)
    minutes = sum(v.duration for v in videos) / 60
    print(f"{len(videos)} long videos ({minutes:.1f} min) in {args.out}; captions and titles: {csv}")
    return 0
