"""The command line: a thin map from subcommands to library functions.

Every command exits 0 on success and 2 with one clear line on bad input (a
:class:`demo.errors.DemoError`); ``--json`` prints machine-readable results.
Heavy imports happen inside the command functions so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from demo.errors import DemoError

log = logging.getLogger("demo")
Command = Callable[[argparse.Namespace], int]


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, ensure_ascii=False, default=str))


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="embedded (default, offline) or webvid; env DEMO_PRESET")
    p.add_argument("--model", help="CLIP4Clip checkpoint folder or hub id (default: the index's model)")
    p.add_argument("--pooling", choices=["meanP", "seqTransf"], help="override the checkpoint's pooling")
    p.add_argument("--index", help="index folder (default: the preset's)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")


def cmd_search(args: argparse.Namespace) -> int:
    from demo.media import MediaResolver, default_cache
    from demo.search import open_searcher

    searcher = open_searcher(args.preset, args.model, args.index, args.pooling, args.device)
    hits = searcher.search_text(args.text, k=args.k, exact=args.exact, rerank=args.rerank)
    # Name a file that plays: a world clip is rendered into the cache first, as the app does.
    media = MediaResolver(searcher.index, default_cache())
    files = {h.id: media.resolve(h.id, h.path_or_url) for h in hits}
    _print_hits(hits, args.json, files)
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from demo.search import open_searcher

    searcher = open_searcher(args.preset, args.model, args.index, args.pooling, args.device)
    hits = searcher.describe_video(args.video, k=args.k)
    _print_hits(hits, args.json)
    return 0


def _print_hits(hits: Sequence[Any], as_json: bool, files: dict[str, str | None] | None = None) -> None:
    """One line per hit (or JSON); ``files`` maps ids to what plays them (a file or URL; None:
    the clip is missing), shown instead of the index's stored path."""
    from demo.search import hit_to_dict

    rows = [hit_to_dict(h) for h in hits]
    if files is not None:
        rows = [{**row, "file": files.get(row["id"])} for row in rows]
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        where = row.get("file") or (row.get("path_or_url", "") + " (missing)" if "file" in row else "") or row["id"]
        print(f"{row['rank']:>3}  {row['score']:.4f}  {row['caption']}  [{where}]")


def cmd_classify(args: argparse.Namespace) -> int:
    from demo.models.labels import load_preset, parse_labels
    from demo.models.xclip import XClipClassifier
    from demo.presets import resolve_preset

    preset = resolve_preset(args.preset, xclip=args.xclip)
    labels = parse_labels(args.labels) if args.labels else load_preset(args.label_preset or preset.labels)
    classifier = XClipClassifier.from_pretrained(preset.xclip, device=args.device)
    result = classifier.classify(args.video, labels, template=args.template, k=args.k)
    if args.json:
        _print_json(result.to_json())
        return 0
    for label, prob in zip(result.labels, result.probs, strict=True):
        print(f"{prob:7.2%}  {label}")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def cmd_index_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from demo.index.build import build_index
    from demo.index.items import items_from_csv, items_from_folder
    from demo.models.encoders import Clip4ClipEncoder
    from demo.presets import resolve_preset

    source = Path(args.source)
    if source.is_dir():
        items, media_root = items_from_folder(source, captions_csv=args.captions), source
    elif source.is_file():
        items, media_root = items_from_csv(source), source.parent
    else:
        raise DemoError(f"source {source} is neither a folder of videos nor a CSV file")
    model = args.model or resolve_preset(args.preset).model
    if args.address and args.engine != "ray":
        raise DemoError("--address is for --engine ray")
    if args.engine == "ray":
        from demo.index.engines.ray_engine import RayOptions, build_index_ray

        options = RayOptions(address=args.address, workers=args.workers, batch_size=args.batch_size,
                             device=args.device)
        report = build_index_ray(items, args.out, str(model), options, pooling=args.pooling,
                                 overwrite=args.overwrite, media_root=media_root, retry_failed=args.retry_failed)
    else:
        encoder = Clip4ClipEncoder.from_pretrained(model, pooling=args.pooling, device=args.device)
        report = build_index(items, args.out, encoder, batch_size=args.batch_size, overwrite=args.overwrite,
                             num_workers=args.workers or 2, model_path=model, media_root=media_root,
                             retry_failed=args.retry_failed)
    resumed = f" ({report.resumed_from} already done before this run)" if report.resumed_from else ""
    print(f"indexed {report.indexed} videos into {args.out}{resumed}")
    if report.skipped:
        print(f"skipped {len(report.skipped)} file(s) that could not be decoded:")
        for path, reason in report.skipped:
            print(f"  {path}: {reason}")
    if report.not_retried:
        print(f"{len(report.not_retried)} of them failed in an earlier run and were not tried again (unchanged "
              "since); pass --retry-failed to try them anyway")
    return 0


def cmd_index_import(args: argparse.Namespace) -> int:
    from demo.index.precomputed import import_precomputed

    index = import_precomputed(args.embeddings, args.metadata, args.out, model=args.model,
                               binary=args.binary, pooling=args.pooling, frames=args.frames,
                               image_size=args.image_size, sample_fps=args.sample_fps,
                               caption_column=args.caption_column, url_column=args.url_column,
                               encode_captions=not args.no_captions, overwrite=args.overwrite)
    print(f"imported {len(index)} videos into {args.out}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from demo.world.clips import WorldConfig, synth

    config = WorldConfig(seed=args.seed)
    written = synth(args.out, config, splits=tuple(args.splits), limit=args.limit, workers=args.workers)
    for split, path in written.items():
        print(f"{split}: {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from demo.train.recipes import train_command

    return train_command(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from demo.evaluate.report import command_line
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
        workers=args.workers, cache=None if args.no_cache else args.cache, command=command)
    if args.write_benchmarks:
        check_publishable(request)  # before minutes of work, not after
    result = run_evaluation(request)
    written = result.save(args.out or f"results/evaluate-{result.suite}")
    if args.write_benchmarks:
        for path in publish(result, request, args.benchmarks):
            print(f"updated {path}")
    if args.json:
        _print_json(result.to_json())
    else:
        print(result.to_markdown())
        print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from demo.bench.runner import SECTIONS, BenchConfig, run_bench

    chosen = [*args.sections, *(args.only or [])]
    config = BenchConfig(sections=tuple(chosen) or SECTIONS, quick=args.quick, out=Path(args.out),
                         markdown=Path(args.markdown) if args.markdown else None,
                         index=Path(args.index) if args.index else None)
    print(run_bench(config)["markdown"])
    return 0


Subparsers = Any  # argparse's _SubParsersAction (a private class)


def _add_query_commands(sub: Subparsers) -> None:
    p = sub.add_parser("search", help="text -> videos")
    p.add_argument("text")
    _model_args(p)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--exact", action="store_true", help="exact cosine search (default: binary + rerank)")
    p.add_argument("--rerank", type=int, default=None, help="binary candidates to rerank by cosine")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("describe", help="video -> captions")
    p.add_argument("video")
    _model_args(p)
    p.add_argument("--k", type=int, default=10)
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


def _add_index_commands(sub: Subparsers) -> None:
    index = sub.add_parser("index", help="build or import a video index").add_subparsers(
        dest="index_command", required=True)
    p = index.add_parser("build", help="embed a folder of videos or a CSV of path,caption")
    p.add_argument("source")
    p.add_argument("--out", required=True)
    p.add_argument("--captions", help="sidecar CSV (path,caption) for a folder source")
    p.add_argument("--preset")
    p.add_argument("--model")
    p.add_argument("--pooling", choices=["meanP", "seqTransf"])
    p.add_argument("--device")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--retry-failed", action="store_true",
                   help="try again files that failed in an earlier run even if they have not changed")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process (default); ray: Ray Data on a Ray cluster (pip install -r "
                   "requirements-scale.txt)")
    p.add_argument("--address", help="ray: the cluster to join (ray://HOST:10001, auto); default: a local Ray")
    p.add_argument("--workers", type=int,
                   help="local: decoding threads (default 2); ray: encoder actors (default: one per GPU, else 1)")
    p.set_defaults(func=cmd_index_build)

    p = index.add_parser("import", help="turn precomputed embeddings into an index")
    p.add_argument("--embeddings", required=True, help="float N x D .npy")
    p.add_argument("--binary", help="sign-binarised packed N x D/8 uint8 .npy")
    p.add_argument("--metadata", required=True, help="CSV with a caption and a path/URL column")
    p.add_argument("--out", required=True)
    p.add_argument("--model", required=True, help="the model that made the embeddings")
    p.add_argument("--pooling", default="meanP")
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--sample-fps", type=float, default=1.0)
    p.add_argument("--caption-column")
    p.add_argument("--url-column")
    p.add_argument("--no-captions", action="store_true", help="skip caption embeddings (no video -> text)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_index_import)


def _add_evaluate_command(sub: Subparsers) -> None:
    p = sub.add_parser("evaluate", help="rerun the retrieval table (R@1, R@5, R@10, MdR, MnR)")
    p.add_argument("--suite", choices=["embedded", "webvid"], default="embedded")
    p.add_argument("--features", nargs=2, metavar=("TEXT.npy", "VIDEO.npy"),
                   help="table from precomputed (N, D) embeddings, row i of each a pair (no model)")
    p.add_argument("--world", default="work/embedded/world",
                   help="embedded: world folder (missing test clips are rendered)")
    p.add_argument("--zero-shot", help="embedded: image-pretrained model (default: shipped; 'none' to skip)")
    p.add_argument("--clip4clip", help="embedded: CLIP4Clip model with a seqTransf head (default: shipped)")
    p.add_argument("--index", help="embedded: index for the free-form query check (default: shipped)")
    p.add_argument("--data", help="webvid: CSV with video ids and captions")
    p.add_argument("--videos", help="webvid: folder of <videoid>.mp4")
    p.add_argument("--models", nargs="+", default=[], help="webvid: extra models, ID or ID:meanP/seqTransf")
    p.add_argument("--no-hub", action="store_true", help="webvid: skip the default hub models")
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
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)


def _add_other_commands(sub: Subparsers) -> None:
    p = sub.add_parser("synth", help="render the embedded world's clips")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    p.add_argument("--limit", type=int, help="only the first N clips of each split")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("bench", help="measure search, query, indexing, app start-up and decoding")
    p.add_argument("sections", nargs="*", metavar="SECTION",
                   help="search query indexing app decode (default: all)")
    p.add_argument("--only", nargs="+", metavar="SECTION", help="same as the positional sections")
    p.add_argument("--quick", action="store_true", help="N=20k, few repetitions, tiny models, no app (CI)")
    p.add_argument("--out", default="work/bench", help="folder for bench.json and bench.md")
    p.add_argument("--markdown", help="file whose bench section is replaced (default: BENCHMARKS.md "
                   "after a full run)")
    p.add_argument("--index", help="index replicated for the realistic search set (default: the embedded one)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("train", help="train CLIP4Clip (or --preset embedded: the shipped models)")
    from demo.train.recipes import add_train_arguments  # torch: only when the parser is built

    add_train_arguments(p)
    p.set_defaults(func=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_query_commands(sub)
    _add_index_commands(sub)
    _add_evaluate_command(sub)
    _add_other_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)  # builds the train parser, which imports torch: Ctrl-C-able
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader reports every CPU-feature probe at INFO
    try:
        return int(args.func(args))
    except DemoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; rerun the same command to continue", file=sys.stderr)
        return 130
