"""The embedded X-CLIP: zero-shot video classification trained on the rendered world.

An ordinary Hugging Face ``XCLIPModel`` sized like the embedded CLIP, initialised from the
CLIP4Clip checkpoint wherever the two share parts and trained with X-CLIP's objective on the
world's event and relation labels. Modules: :mod:`~demo.train.xclip.convert` (CLIP -> X-CLIP
config and weights), :mod:`~demo.train.xclip.data` (the classes, their held-out rewordings and
the labelled clips), :mod:`~demo.train.xclip.trainer` (the training run) and
:mod:`~demo.train.xclip.evaluation` (test accuracy and its BENCHMARKS.md section); the model card is
:func:`demo.train.cards.write_xclip_card`. ``python -m demo train --preset embedded-xclip`` runs
it all.
"""

from demo.train.xclip.convert import (
    CLIP_TO_XCLIP,
    FOLDED,
    HEAD_TO_MIT,
    InitReport,
    build_xclip,
    fold_normalisation,
    init_from_clip,
    map_name,
    xclip_config,
)
from demo.train.xclip.data import (
    REVERSED_CLASS,
    REWORDED,
    TEMPLATE,
    LabelledClip,
    clip_label,
    load_frames,
    read_labelled,
    training_phrasings,
)
from demo.train.xclip.evaluation import BENCH_SECTION, evaluate_xclip, results_table, write_benchmarks
from demo.train.xclip.trainer import XClipTrainConfig, XClipTrainer, predict, save_xclip, train_xclip

__all__ = [
    "BENCH_SECTION", "CLIP_TO_XCLIP", "FOLDED", "HEAD_TO_MIT", "REVERSED_CLASS", "REWORDED", "TEMPLATE",
    "InitReport", "LabelledClip", "XClipTrainConfig", "XClipTrainer", "build_xclip", "clip_label",
    "evaluate_xclip", "fold_normalisation", "init_from_clip", "load_frames", "map_name", "predict",
    "read_labelled", "results_table", "save_xclip", "train_xclip", "training_phrasings", "write_benchmarks",
    "xclip_config",
]  # fmt: skip
