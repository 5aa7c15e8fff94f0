"""The ``train`` command: its arguments and which recipe or training run they go to.

``python -m demo train --train DATA --out DIR ...`` runs one stage (:class:`TrainConfig`, one flag
per field); ``--preset embedded`` rebuilds the shipped CLIP4Clip models and ``--preset
embedded-xclip`` the X-CLIP (``--evaluate-only``: re-evaluate it and rewrite its BENCHMARKS.md
section). A flag the chosen path does not use is an error, not silently ignored.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import fields
from typing import Any

from demo.errors import InputError
from demo.train.config import TrainConfig

# Flags that are not TrainConfig fields (dest names), and the TrainConfig fields with flags of their own.
PRESET_FLAGS = ("preset", "work", "evaluate_only", "benchmarks")
RUN_FLAGS = ("train", "val", "out", "init", "model_config", "resume", "no_amp")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train`` subcommand's flags; every one defaults to None (unset), so the command can
    tell which were given."""
    p.add_argument("--preset", choices=["embedded", "embedded-xclip"],
                   help="rebuild the shipped embedded models (embedded-xclip: the X-CLIP, after embedded)")
    p.add_argument("--train", help="CSV (path,caption) or world .jsonl")
    p.add_argument("--val", help="validation data (default: 5%% of --train)")
    p.add_argument("--out", help="output folder (checkpoints, log; with --preset: where the models go)")
    p.add_argument("--init", help="CLIP/CLIP4Clip checkpoint folder or hub id to start from")
    p.add_argument("--model-config", help="JSON with text/vision configs for random init")
    p.add_argument("--work", help="with --preset: working folder (default work/embedded)")
    p.add_argument("--evaluate-only", action="store_true", default=None,
                   help="with --preset embedded-xclip: re-evaluate <out>/xclip-world on <work>/world's test "
                        "split and rewrite its BENCHMARKS.md section, without training")
    p.add_argument("--benchmarks", help="with --preset embedded-xclip: the BENCHMARKS.md to update")
    for f in fields(TrainConfig):
        if f.name in {"train", "val", "out", "init", "model_config", "resume", "amp"}:
            continue
        if isinstance(f.default, bool):  # --compile / --no-compile; unset: the config's or recipe's default
            p.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=None)
            continue
        kind: Any = type(f.default) if f.default is not None else (
            float if f.name in {"sample_fps"} else int if f.name in {"max_frames", "limit", "schedule_epochs"} else str)
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None)
    p.add_argument("--resume", action="store_true", default=None, help="continue from out/last")
    p.add_argument("--no-amp", action="store_true", default=None, help="no mixed precision on CUDA")


def train_command(args: argparse.Namespace) -> int:
    """Run what the ``train`` flags ask for; an unused flag is an :class:`InputError` (exit 2)."""
    # The recipes load torch and the models: only now, so the CLI starts fast.
    from demo.train import recipes
    from demo.train.loop import train
    from demo.train.xclip import results_table

    given = {k: v for k, v in vars(args).items() if k in _all_flags() and v is not None}
    if args.preset == "embedded":
        takes = {f.name for f in fields(recipes.EmbeddedRecipe)} - {"shared"} | set(recipes.SHARED_FIELDS)
        recipe = recipes.EmbeddedRecipe.from_flags(**_checked(given, "--preset embedded", takes))
        for name, path in recipes.train_embedded(recipe).items():
            print(f"{name}: {path}")
        return 0
    if args.preset == "embedded-xclip" and args.evaluate_only:
        allowed = {"out", "work", "benchmarks"}
        xclip = recipes.XClipRecipe(**_checked(given, "--preset embedded-xclip --evaluate-only", allowed))
        results = recipes.evaluate_embedded_xclip(xclip, _command(given))
        print(results_table(results))
        return 0
    if args.preset == "embedded-xclip":
        xclip = recipes.XClipRecipe(**_checked(given, "--preset embedded-xclip", recipes.XClipRecipe))
        print(f"xclip-world: {recipes.train_embedded_xclip(xclip)}")
        return 0
    if not args.train or not args.out:
        raise InputError("train needs --train DATA and --out DIR (or --preset embedded)")
    values = _checked(given, "train without --preset", {f.name for f in fields(TrainConfig)} | {"no_amp"})
    amp = not values.pop("no_amp", False)
    print(train(TrainConfig(**values, amp=amp)))
    return 0


def _checked(given: dict[str, Any], what: str, takes: Any) -> dict[str, Any]:
    """``given`` without ``preset`` and ``evaluate_only``, once every other flag is one that ``takes``
    (a set of names or a dataclass whose fields they are) uses; else an error that names both."""
    names = set(takes) if isinstance(takes, set) else {f.name for f in fields(takes)}
    values = {k: v for k, v in given.items() if k not in ("preset", "evaluate_only")}
    unused = sorted(_flag(k) for k in values if k not in names)
    if unused:
        usable = sorted(_flag(k) for k in names if k in _all_flags())
        raise InputError(f"{what} does not use {', '.join(unused)}; it takes {', '.join(usable)}")
    return values


def _all_flags() -> set[str]:
    """Dest names of the train command's flags (TrainConfig's fields less ``amp``, and the rest)."""
    return {f.name for f in fields(TrainConfig)} - {"amp"} | set(PRESET_FLAGS) | set(RUN_FLAGS)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _command(given: dict[str, Any]) -> str:
    """The train command line with the ``given`` flags, as a results note records it."""
    parts = ["python", "-m", "demo", "train"]
    for dest, value in given.items():
        if isinstance(value, bool):  # store_true flags, and --compile / --no-compile
            parts.append(_flag(dest) if value else _flag(f"no_{dest}"))
        else:
            parts += [_flag(dest), str(value)]
    return shlex.join(parts)
