"""``train``, ``synth`` and ``bench``: making models, worlds and measurements (``convert``: :mod:`demo.cli.convert`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

Subparsers = Any  # argparse's _SubParsersAction (a private class)


def cmd_synth(args: argparse.Namespace) -> int:
    from demo.world import WorldConfig, synth

    if args.long:
        from demo.cli.long_videos import synth_long

        return synth_long(args)
    config = WorldConfig(seed=args.seed)
    written = synth(args.out, config, splits=tuple(args.splits), limit=args.limit, workers=args.workers)
    for split, path in written.items():
        print(f"{split}: {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from demo.cli.train import train_command

    return train_command(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from demo.bench.runner import SECTIONS, BenchConfig, run_bench

    chosen = [*args.sections, *(args.only or [])]
    config = BenchConfig(sections=tuple(chosen) or SECTIONS, quick=args.quick, out=Path(args.out),
                         markdown=Path(args.markdown) if args.markdown else None,
                         index=Path(args.index) if args.index else None,
                         rows=tuple(args.rows) if args.rows else None)
    print(run_bench(config)["markdown"])
    return 0


def add_workbench_commands(sub: Subparsers) -> None:
    p = sub.add_parser("synth", help="render the embedded world's clips")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    p.add_argument("--limit", type=int, help="only the first N clips of each split")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--long", type=int, metavar="N", help="instead: N long test videos made of 6-15 clips each, with "
                   "a videos.csv to index them (python -m demo index build OUT/videos.csv --segment 4)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("bench", help="measure search, query, indexing, app start-up and decoding")
    p.add_argument("sections", nargs="*", metavar="SECTION",
                   help="search query indexing app decode (default: all); "
                        "scale, engines, recall, import, resize, space: only when named")
    p.add_argument("--only", nargs="+", metavar="SECTION", help="same as the positional sections")
    p.add_argument("--quick", action="store_true", help="N=20k, few repetitions, tiny models, no app (CI)")
    p.add_argument("--rows", type=int, nargs="+", metavar="N",
                   help="space: index sizes to run (default 1500000 5400000; 10000000 and more: the load alone); "
                        "recall: every set at the first N (a short run: no BENCHMARKS.md section)")
    p.add_argument("--out", default="work/bench", help="folder for bench.json and bench.md")
    p.add_argument("--markdown", help="file whose bench section is replaced (default: BENCHMARKS.md "
                   "after a full run)")
    p.add_argument("--index", help="index replicated for the realistic search set (default: the embedded one)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("train", help="train CLIP4Clip (or --preset embedded: the shipped models)")
    from demo.cli.train import add_train_arguments

    add_train_arguments(p)
    p.set_defaults(func=cmd_train)
