"""``search``, ``describe`` and ``classify``: asking an index or a classifier about text, images and clips."""

from __future__ import annotations

import argparse
from typing import Any

from demo.cli.common import model_args, print_hits, print_json
from demo.errors import DemoError

Subparsers = Any  # argparse's _SubParsersAction (a private class)

# More results than anyone reads: a larger --k is refused (the app's slider stops at demo.app.results.MAX_K).
MAX_RESULTS = 1000


def check_k(k: int) -> int:
    """``--k`` within 1..MAX_RESULTS, else one line saying so."""
    if not 1 <= k <= MAX_RESULTS:
        raise DemoError(f"--k must be between 1 and {MAX_RESULTS:,}, got {k:,}")
    return k


def check_video_arg(path: str) -> None:
    """A clip to describe or classify, checked from its header before any model loads (seconds):
    a missing, empty or non-video file is refused at once."""
    from demo.video.decode import check_video

    check_video(path)


def cmd_search(args: argparse.Namespace) -> int:
    from demo.search.text import clean_query

    asked = [x for x in (args.text, args.image, args.like) if x is not None]
    if len(asked) != 1:
        raise DemoError("give one query: TEXT, --image PHOTO or --like RESULT_ID")
    check_k(args.k)
    if args.per_video < 1:
        raise DemoError(f"--per-video must be at least 1, got {args.per_video}")
    if args.text is not None:
        clean_query(args.text)
    elif args.image:
        from demo.video.images import load_image

        load_image(args.image)
    from demo.presets import resolve_preset
    from demo.search.media import MediaResolver, default_cache  # the model's imports: seconds
    from demo.search.searcher import open_searcher

    searcher = open_searcher(resolve_preset(args.preset, args.model, args.index, pooling=args.pooling), args.device)
    if args.image:
        timed = searcher.search_image_timed(args.image, k=args.k, exact=args.exact, rerank=args.rerank,
                                            per_video=args.per_video)
    elif args.like:
        timed = searcher.more_like_this(args.like, k=args.k, exact=args.exact, per_video=args.per_video)
    else:
        timed = searcher.search_text_timed(args.text, k=args.k, exact=args.exact, rerank=args.rerank,
                                           per_video=args.per_video)
    # Name a file that plays: a world clip is rendered into the cache first, as the app does.
    media = MediaResolver(searcher.index, default_cache())
    files = {h.id: media.resolve(h.id, h.path_or_url) for h in timed.hits}
    print_hits(timed.hits, args.json, files)
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    check_k(args.k)
    check_video_arg(args.video)
    from demo.presets import resolve_preset
    from demo.search.searcher import open_searcher  # the model's imports: seconds

    searcher = open_searcher(resolve_preset(args.preset, args.model, args.index, pooling=args.pooling), args.device)
    if args.timeline or args.segment is not None:
        from demo.cli.long_videos import print_timeline

        print_timeline(searcher.describe_timeline(args.video, args.segment), args.json)
        return 0
    hits = searcher.describe_video(args.video, k=args.k)
    print_hits(hits, args.json)
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from demo.models.labels import load_preset, parse_labels
    from demo.presets import resolve_preset

    check_k(args.k)
    preset = resolve_preset(args.preset, xclip=args.xclip)
    labels = parse_labels(args.labels) if args.labels else load_preset(args.label_preset or preset.labels)
    check_video_arg(args.video)
    from demo.models.xclip import XClipClassifier  # the model's imports: seconds

    classifier = XClipClassifier.from_pretrained(preset.xclip, device=args.device)
    result = classifier.classify(args.video, labels, template=args.template, k=args.k)
    if args.json:
        print_json(result.to_json())
        return 0
    for label, prob in zip(result.labels, result.probs, strict=True):
        print(f"{prob:7.2%}  {label}")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def add_query_commands(sub: Subparsers) -> None:
    p = sub.add_parser("search", help="text (or an image, or a result) -> videos; moments in long videos")
    p.add_argument("text", nargs="?")
    model_args(p)
    p.add_argument("--image", help="search with a photo or a saved frame instead of text")
    p.add_argument("--like", metavar="RESULT_ID", help="more like this result (a video id; a moment's window id)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--per-video", type=int, default=1, help="moments per long video (segmented indexes)")
    p.add_argument("--exact", action="store_true", help="exact cosine search (default: binary + rerank)")
    p.add_argument("--rerank", type=int, default=None, help="binary candidates to rerank by cosine")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("describe", help="video -> captions (--timeline: captions along a long video)")
    p.add_argument("video")
    model_args(p)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--timeline", action="store_true", help="the best caption per stretch of the video")
    p.add_argument("--segment", type=float, help="timeline: seconds per stretch (default: the index's windows, else 4)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("classify", help="zero-shot classification of a clip with X-CLIP")
    p.add_argument("video")
    p.add_argument("--labels", help='comma- or newline-separated, e.g. "moving left, growing"')
    p.add_argument("--label-preset", help="kinetics400 or embedded-events (default: the preset's)")
    p.add_argument("--template", default="{}", help='prompt template, e.g. "a video of {}"')
    p.add_argument("--preset")
    p.add_argument("--xclip", help="X-CLIP checkpoint folder or hub id")
    p.add_argument("--device")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_classify)
