"""``index build``, ``index import`` and ``index fetch``: making index folders."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from demo.errors import DemoError
from demo.presets import POOLING_CHOICES

Subparsers = Any  # argparse's _SubParsersAction (a private class)


def cmd_index_build(args: argparse.Namespace) -> int:
    from demo.cli.long_videos import print_not_videos, print_skipped
    from demo.index.items import items_from_csv, items_from_folder, not_videos
    from demo.presets import resolve_preset
    from demo.video.windows import SegmentSpec

    spec = SegmentSpec.of(args.segment, args.stride)  # a bad --segment is refused before the model loads
    if args.address and args.engine != "ray":
        raise DemoError("--address is for --engine ray")
    if spec is not None and args.engine == "ray":
        raise DemoError("--segment builds run on the local engine; leave out --engine ray")
    source, ignored = Path(args.source), []
    if source.is_dir():
        items, media_root = items_from_folder(source, captions_csv=args.captions), source
        ignored = not_videos(source, args.captions)
    elif source.is_file():
        items, media_root = items_from_csv(source), source.parent
    else:
        raise DemoError(f"source {source} is neither a folder of videos nor a CSV file")
    # one resolved preset for either engine: model, pooling, frame sampling (webvid: every second), resizing
    preset = resolve_preset(args.preset, model=args.model, pooling=args.pooling)
    if args.engine == "ray":
        report = _build_on_ray(args, items, preset, media_root)
    else:
        report = _build_here(args, items, preset, media_root, spec)
    if report is not None:
        resumed = f" ({report.resumed_from} already done before this run)" if report.resumed_from else ""
        print(f"indexed {report.indexed} videos into {args.out}{resumed}")
        print_skipped(report.skipped, report.not_retried)
    print_not_videos(ignored)
    return 0


def _build_on_ray(args: argparse.Namespace, items: Any, preset: Any, media_root: Path) -> Any:
    from demo.index.engines.ray_engine import RayOptions, build_index_ray

    sizes = {"batch_size": args.batch_size} if args.batch_size else {}  # unset: RayOptions' default
    options = RayOptions(address=args.address, workers=args.workers, device=args.device, **sizes)
    return build_index_ray(items, args.out, preset, options, overwrite=args.overwrite, media_root=media_root,
                           retry_failed=args.retry_failed)


def _build_here(args: argparse.Namespace, items: Any, preset: Any, media_root: Path, spec: Any) -> Any:
    """The local engine: whole clips (the report), or windows of long videos (printed here; None)."""
    from demo.cli.long_videos import build_segments
    from demo.index.build import build_index

    encoder = preset.open_encoder(args.device)
    if spec is not None:
        build_segments(args, items, encoder, spec, preset.model, media_root)
        return None
    return build_index(items, args.out, encoder, batch_size=args.batch_size or 8, overwrite=args.overwrite,
                       num_workers=args.workers or 2, model_path=preset.model, media_root=media_root,
                       retry_failed=args.retry_failed)


def cmd_index_import(args: argparse.Namespace) -> int:
    from demo.index.fetch import import_files

    report = import_files(args.embeddings, args.metadata, args.out, args.model, binary=args.binary,
                          pooling=args.pooling, image_size=args.image_size, caption_column=args.caption_column,
                          url_column=args.url_column, captions=args.captions, device=args.device,
                          overwrite=args.overwrite, frame_sampling=args.sampling)
    print(report.summary())
    return 0


def cmd_index_fetch(args: argparse.Namespace) -> int:
    from demo.index.fetch import fetch_preset, fetched_from
    from demo.index.store import read_manifest
    from demo.presets import resolve_preset

    files = [f.strip() for f in args.index_files.split(",") if f.strip()] if args.index_files else None
    preset = resolve_preset(args.preset, model=args.model, index_set=args.set)
    report = fetch_preset(preset, args.out, repo=args.index_repo, files=files, revision=args.revision,
                          captions=args.captions, device=args.device, overwrite=args.overwrite)
    print(f"{report.summary()}; from {fetched_from(read_manifest(Path(report.path)))}")
    return 0


def _caption_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--captions", choices=["auto", "all", "none"], default=default,
                   help="embed every caption for video -> text: all, none (describe a clip by the captions of "
                   "its nearest videos), auto (all on a GPU, none on a CPU); default " + default)
    p.add_argument("--device", help="cpu or cuda for the caption embeddings (default: cuda when present)")
    p.add_argument("--overwrite", action="store_true")


def add_index_commands(sub: Subparsers) -> None:
    index = sub.add_parser("index", help="build or import a video index").add_subparsers(
        dest="index_command", required=True)
    p = index.add_parser("build", help="embed a folder of videos or a CSV of path,caption")
    p.add_argument("source")
    p.add_argument("--out", required=True)
    p.add_argument("--captions", help="sidecar CSV (path,caption) for a folder source")
    p.add_argument("--preset")
    p.add_argument("--model")
    p.add_argument("--pooling", choices=POOLING_CHOICES)
    p.add_argument("--device")
    p.add_argument("--batch-size", type=int, help="videos per batch (default 8); windows with --segment (32)")
    p.add_argument("--segment", type=float, help="long videos: index windows of this many seconds (off: whole videos)")
    p.add_argument("--stride", type=float, help="seconds between window starts (default: half the segment)")
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

    p = index.add_parser("import", help="turn precomputed embeddings into an index (streamed)")
    p.add_argument("--embeddings", required=True, help="float N x D .npy")
    p.add_argument("--binary", help="sign-binarised packed N x D/8 uint8 .npy")
    p.add_argument("--metadata", required=True, help="CSV with a caption and a path/URL column")
    p.add_argument("--out", required=True)
    p.add_argument("--model", required=True, help="the model that made the embeddings")
    p.add_argument("--pooling", help="the pooling they were made with (default: the checkpoint's)")
    p.add_argument("--sampling", choices=["float-fps", "clip4clip", "every-second"],
                   help="the frame sampling they were made with (default: the checkpoint's)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--caption-column")
    p.add_argument("--url-column")
    _caption_args(p, default="none")
    p.set_defaults(func=cmd_index_import)

    p = index.add_parser("fetch", help="download a preset's precomputed index from the hub and import it")
    p.add_argument("preset", nargs="?", help="webvid (default: $DEMO_PRESET)")
    p.add_argument("--out", help="index folder (default: the preset's)")
    p.add_argument("--model", help="the model the vectors were made with (default: the preset's)")
    p.add_argument("--index-repo", help="hub repo to take the files from, e.g. spaces/ORG/NAME (default: the preset's)")
    p.add_argument("--index-files", help="comma-separated repo paths: vectors .npy[, codes .npy], metadata .csv "
                   "(default: found by listing the repo)")
    p.add_argument("--set", help="which of the preset's sets: webvid's v1 (1.5M videos, the default) or half "
                   "(~5.4M, into its own folder); default $DEMO_INDEX_SET")
    p.add_argument("--revision", help="branch, tag or commit of the repo to take the files from (default: the "
                   "preset's pinned commit, else the newest commit holding a complete set)")
    _caption_args(p, default="auto")
    p.set_defaults(func=cmd_index_fetch)
