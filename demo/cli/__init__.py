"""The command line: a thin map from subcommands to library functions.

One module per family of commands (``query``: search, describe, classify; ``index``: build, import,
fetch; ``evaluate``; ``convert``: other code bases' checkpoints; ``workbench``: synth, bench and the train
command of ``train``; ``long_videos``: what the commands on long videos print), each with its subcommands'
parser and their functions; this one builds the parser and runs it.

Every command exits 0 on success and 2 with one clear line on bad input (a
:class:`demo.errors.DemoError`); ``--json`` prints machine-readable results.
Heavy imports happen inside the command functions so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from demo.cli.convert import add_convert_commands
from demo.cli.evaluate import add_evaluate_command
from demo.cli.index import add_index_commands
from demo.cli.query import add_query_commands
from demo.cli.workbench import add_workbench_commands
from demo.errors import DemoError

log = logging.getLogger("demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    add_query_commands(sub)
    add_index_commands(sub)
    add_evaluate_command(sub)
    add_workbench_commands(sub)
    add_convert_commands(sub)
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
