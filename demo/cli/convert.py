"""``convert``: checkpoints of other code bases -> this project's model folders (:mod:`demo.models.convert`).

None of the real checkpoints can be fetched by these commands (they are hosted on Google Drive, Baidu
and OpenMMLab's download site): download one yourself, then convert the file.
"""

from __future__ import annotations

import argparse
from typing import Any

Subparsers = Any  # argparse's _SubParsersAction (a private class)


def cmd_convert(args: argparse.Namespace) -> int:
    common = {"max_frames": args.max_frames, "max_words": args.max_words, "overwrite": args.overwrite}
    if args.convert_command == "clip2video":
        from demo.models.convert.clip2video import convert_clip2video

        out = convert_clip2video(args.checkpoint, args.out, feature_framerate=args.feature_framerate,
                                 tab_weight=args.tab_weight, **common)
    elif args.convert_command == "mmaction2":
        from demo.models.convert.mmaction2 import convert_mmaction2

        out = convert_mmaction2(args.checkpoint, args.out, **common)
    else:
        from demo.models.convert import convert_clip4clip

        out = convert_clip4clip(args.checkpoint, args.out, sample_fps=args.sample_fps, **common)
    print(f"converted {args.checkpoint} into {out}")
    return 0


def _common(p: argparse.ArgumentParser, frames: int, words: int) -> None:
    p.add_argument("--out", required=True, help="the model folder to write (python -m demo ... --model OUT)")
    p.add_argument("--max-frames", type=int, default=frames, help=f"frames it was trained with ({frames})")
    p.add_argument("--max-words", type=int, default=words, help=f"text tokens it was trained with ({words})")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_convert)


def add_convert_commands(sub: Subparsers) -> None:
    convert = sub.add_parser("convert", help="convert checkpoints of other code bases", description=__doc__
                             ).add_subparsers(dest="convert_command", required=True)
    p = convert.add_parser("clip4clip", help="a checkpoint trained with the CLIP4Clip code -> a model folder")
    p.add_argument("checkpoint", help="pytorch_model.bin.N saved by CLIP4Clip (meanP, seqLSTM or seqTransf)")
    p.add_argument("--sample-fps", type=float, default=1.0, help="frames per second it sampled (1)")
    _common(p, 12, 32)

    p = convert.add_parser(
        "clip2video", help="a CLIP2Video checkpoint (TDB + TAB) -> a model folder computing as CLIP2Video",
        description="CLIP2Video's released pytorch_model.bin.N (MSR-VTT, MSVD, VATEX; download it from the links "
                    "in CLIP2Video's README). Frames: its 5-fps / feature_framerate rule, PIL bicubic, centre crop.")
    p.add_argument("checkpoint", help="pytorch_model.bin.N released with CLIP2Video")
    p.add_argument("--feature-framerate", type=int, default=2, help="its --feature_framerate (2 in all its scripts)")
    p.add_argument("--tab-weight", type=float, default=0.5, help="its --center_weight (0.5)")
    _common(p, 12, 32)

    p = convert.add_parser(
        "mmaction2", help="MMAction2's CLIP4Clip .pth (mean adapter) -> a model folder computing as MMAction2",
        description="A .pth saved by MMAction2's tools/train.py for configs/retrieval/clip4clip (download it from "
                    "the config's README). Frames: UniformSample(12) in test mode, short side 256, centre crop "
                    "224, its mean/std.")
    p.add_argument("checkpoint", help="the .pth (a training checkpoint whose state_dict holds clip.* weights)")
    _common(p, 12, 77)
