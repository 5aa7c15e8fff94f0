"""``evaluate``: the retrieval tables (the embedded world, WebVid-style data, published features, moments,
MSR-VTT 1k-A)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from demo.cli.common import print_json
from demo.errors import InputError

Subparsers = Any  # argparse's _SubParsersAction (a private class)


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.suite == "moments":
        from demo.cli.long_videos import evaluate_moments

        return evaluate_moments(args)
    if args.suite == "msrvtt":
        return evaluate_msrvtt(args)
    from demo.evaluate.results import command_line
    from demo.evaluate.workflow import EvaluateRequest, check_publishable, publish, run_evaluation

    options = {k: v for k, v in vars(args).items() if k not in ("func", "command", "verbose")}
    as_typed = Path(sys.argv[0]).parent.name == "demo"  # python -m demo ...: record argv as typed
    command = shlex.join(["python", "-m", "demo", *sys.argv[1:]]) if as_typed else command_line(options)
    defaults = EvaluateRequest()
    request = EvaluateRequest(
        suite=args.suite, features=tuple(args.features) if args.features else None, world=args.world,
        zero_shot=None if args.zero_shot == "none" else (args.zero_shot or defaults.zero_shot),
        clip4clip=args.clip4clip or defaults.clip4clip, index=args.index or defaults.index,
        data=args.data, videos=args.videos, models=tuple(args.models), hub=not args.no_hub,
        id_column=args.id_column, caption_column=args.caption_column, path_column=args.path_column,
        limit=args.limit, rerank=tuple(args.rerank), device=args.device, batch_size=args.batch_size,
        workers=args.workers, cache=None if args.no_cache else args.cache, command=command,
        features_repo=args.features_repo)
    if args.write_benchmarks:
        check_publishable(request)  # before minutes of work, not after
    result = run_evaluation(request)
    written = result.save(args.out or f"results/evaluate-{result.suite}")
    if args.write_benchmarks:
        for path in publish(result, request, args.benchmarks):
            print(f"updated {path}")
    _show(result, written, args.json)
    return 0


def evaluate_msrvtt(args: argparse.Namespace) -> int:
    """``--suite msrvtt``: :mod:`demo.evaluate.msrvtt` for ``--models`` (and, unless ``--no-hub``, the
    hub's zero-shot CLIP and WebVid CLIP4Clip rows)."""
    from demo.evaluate.msrvtt import evaluate_msrvtt as run
    from demo.evaluate.suites import webvid_models

    if not args.videos or not args.captions:
        raise InputError("the msrvtt suite needs --videos DIR (video7xxx.mp4) and --captions CSV "
                         "(key,vid_key,video_id,sentence: the 1k-A test split)")
    specs = webvid_models(args.models, hub=not args.no_hub, rerank=())
    command = shlex.join(["python", "-m", "demo", *sys.argv[1:]])
    result = run(args.videos, args.captions, [(s.name, s.model, s.pooling) for s in specs], limit=args.limit,
                 device=args.device, cache=None if args.no_cache else args.cache, batch_size=args.batch_size,
                 workers=args.workers, command=command)
    written = result.save(args.out or "results/evaluate-msrvtt")
    _show(result, written, args.json)
    return 0


def add_evaluate_command(sub: Subparsers) -> None:
    p = sub.add_parser("evaluate", help="rerun the retrieval table (R@1, R@5, R@10, MdR, MnR)")
    p.add_argument("--suite", choices=["embedded", "webvid", "webvid-features", "moments", "msrvtt"],
                   default="embedded",
                   help="webvid-features: the card's table from the WebVid-10k features published with the model; "
                   "moments: long videos composed from the world's clips, indexed as windows; msrvtt: the "
                   "MSR-VTT 1k-A table (your copy of the test videos, --videos and --captions)")
    p.add_argument("--features-repo", help="webvid-features: hub repo holding them (default: the webvid model's)")
    p.add_argument("--features", nargs=2, metavar=("TEXT.npy", "VIDEO.npy"),
                   help="table from precomputed (N, D) embeddings, row i of each a pair (no model)")
    p.add_argument("--world", default="work/embedded/world",
                   help="embedded: world folder (missing test clips are rendered)")
    p.add_argument("--zero-shot", help="embedded: image-pretrained model (default: shipped; 'none' to skip)")
    p.add_argument("--clip4clip", help="embedded: CLIP4Clip model, one row per head it holds (default: shipped)")
    p.add_argument("--index", help="embedded: index for the free-form query check (default: shipped)")
    p.add_argument("--data", help="webvid: CSV with video ids and captions")
    p.add_argument("--videos", help="webvid: folder of <videoid>.mp4; msrvtt: folder of video7xxx.mp4")
    p.add_argument("--captions", help="msrvtt: the 1k-A test CSV (key,vid_key,video_id,sentence), e.g. "
                   "MSRVTT_JSFUSION_test.csv")
    p.add_argument("--models", nargs="+", default=[],
                   help="webvid, msrvtt: extra models, ID or ID:POOLING (e.g. a folder from python -m demo convert)")
    p.add_argument("--no-hub", action="store_true", help="webvid, msrvtt: skip the default hub models")
    p.add_argument("--id-column", default="videoid")
    p.add_argument("--caption-column", default="name")
    p.add_argument("--path-column", help="video file column (URL file name or path under --videos)")
    p.add_argument("--limit", type=int, help="only the first N test videos")
    p.add_argument("--rerank", type=int, nargs="+", default=[100, 500], help="binarised rows: rerank depths")
    p.add_argument("--device")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=4, help="decoding threads")
    p.add_argument("--cache", default="cache/evaluate", help="frame-feature cache folder")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--out", help="results folder (default results/evaluate-<suite>)")
    p.add_argument("--write-benchmarks", action="store_true",
                   help="embedded: update BENCHMARKS.md, <clip4clip>/eval.json and the model cards' test-split tables")
    p.add_argument("--benchmarks", help="the BENCHMARKS.md to update (default: the repository's)")
    p.add_argument("--split", choices=["test", "val"], default="test", help="moments: the clips to compose")
    p.add_argument("--long-videos", type=int, default=24, help="moments: how many long videos")
    p.add_argument("--windows", nargs="+", default=["4:2", "8:4"], metavar="SEGMENT:STRIDE",
                   help="moments: the segmentings to index (the first is scored in full)")
    p.add_argument("--margins", type=float, nargs="+", help="moments: merge margins to compare")
    p.add_argument("--hour", action="store_true", help="moments: also index a 60-minute video (speed, peak memory)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)


def _show(result: Any, written: dict[str, Any], as_json: bool) -> None:
    """The result as JSON, or its Markdown and the files written."""
    if as_json:
        print_json(result.to_json())
    else:
        print(result.to_markdown())
        print("wrote " + ", ".join(str(p) for p in written.values()))
