"""Training recipes: the stages that rebuild the shipped embedded models, and their X-CLIP.

``python -m demo train --preset embedded`` rebuilds the shipped models from
nothing: it renders the world, pretrains a small CLIP on still frames, fine-tunes
it as CLIP4Clip on clips, and copies the results into ``precomputed/``. Before the
image-text stage the vision tower alone is taught what frames show (``frames`` stage,
see :mod:`demo.train.loop`): the stand-in for starting from an ImageNet-trained ViT.
``--preset embedded-xclip`` then trains the X-CLIP from the shipped CLIP4Clip.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from demo.errors import InputError
from demo.files import atomic_write
from demo.index.build import build_index
from demo.index.items import items_from_csv
from demo.models.encoders import Clip4ClipEncoder
from demo.models.tokenizer import shrink_vocabulary
from demo.presets import PRECOMPUTED, shown_path
from demo.train import xclip as tx
from demo.train.cards import write_clip4clip_card, write_xclip_card
from demo.train.config import TrainConfig
from demo.train.data import FrameCaches, read_samples
from demo.train.loop import train
from demo.world import SPLITS, WorldConfig, synth, synth_turning, vocabulary

log = logging.getLogger(__name__)

# The embedded model: small enough to train from scratch on a 2-core CPU in well
# under an hour, big enough to read shapes at 64x64. The text tower keeps CLIP's
# full 49,408-token vocabulary so any typed query tokenises as CLIP would.
EMBEDDED_MODEL: dict[str, dict[str, Any]] = {
    "text": {"vocab_size": 49408, "hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4,
             "num_attention_heads": 4, "max_position_embeddings": 32, "projection_dim": 128},
    "vision": {"image_size": 64, "patch_size": 8, "hidden_size": 128, "intermediate_size": 512,
               "num_hidden_layers": 4, "num_attention_heads": 4, "projection_dim": 128},
    # The TDB heads read the signed turn between adjacent frames in 8 planes (demo.models.clip2video, turn planes).
    "clip4clip": {"sample_fps": 3.0, "max_frames": 8, "max_words": 32, "head_layers": 2, "head_heads": 4,
                  "tdb_turn_planes": 8},
    # Patch positions start as 2-D sin-cos codes at about a patch's own magnitude (see
    # Clip4Clip.from_config): with HF's tiny random positions the ViT never learns where things are.
    # (DCT patch filters were tried for shape and left off: docs/decisions/left-off-training-options.md.)
    "init": {"position_scale": 0.5},
}


# What every stage of the embedded recipe shares: TrainConfig's own fields, set once (the stages add data,
# epochs, learning rates and the pooling; the loss weights below reach only the stages that use them, see
# VIDEO_ONLY and IMAGE_ONLY). ``train`` and ``out`` are the stages' own.
RECIPE_STAGE = TrainConfig(
    train="", out="", model_config="", batch_size=64, seed=0,
    # Stage 1: share of frames captioned with where each object is (mirrored caption as a hard negative).
    frame_captions=0.75,
    # Video stages: each clip's caption with an event changed as a hard negative, and the frame-caption loss on
    # one frame per clip so frame embeddings keep positions.
    hard_negatives=1.0, frame_loss=0.5,
    # Video stages: each caption that reads differently backwards also scores its clip's frames in reverse
    # order as a negative (TrainConfig.reversed_videos): what teaches the head direction.
    reversed_videos=1.0,
    # All stages: frame embeddings regressed onto what each frame shows (TrainConfig.layout_loss), so that
    # position, size, opacity and angle survive into the video stages for the head to read.
    layout_loss=1.0,
    # All stages: the angle code's weight within the layout loss. With turning_worlds 6, x8 lifted stage 0's
    # angle R^2 from 0.16 to 0.48 (docs/experiments.md).
    angle_weight=8.0,
    # All stages: weight of the frame shape classification. In stage 0 it teaches shape; afterwards it keeps
    # it in the frames (val probe 88.5% after stage 0, 93% after stage 2).
    shape_loss=1.0,
    # Video stages: weight of the event centres: captions and clips told which events they show, through one
    # learned centre per event shared by both towers (docs/experiments.md, issue 23).
    event_loss=1.0,
    # Every stage compiles the towers (docs/decisions/compile-every-stage.md); --no-compile trains eagerly.
    compile=True, resume=True,
)
# zero in stages 0 and 1
VIDEO_ONLY = ("hard_negatives", "look_negatives", "frame_loss", "reversed_videos", "event_loss", "look_loss")
IMAGE_ONLY = ("frame_captions",)  # zero in stage 0 and the video stages
# The TrainConfig fields a recipe takes from the command line (`train --preset embedded --batch-size 32`).
SHARED_FIELDS = ("batch_size", "seed", *IMAGE_ONLY, *VIDEO_ONLY, "looks", "layout_loss", "angle_weight",
                 "shape_loss", "compile")


@dataclass(frozen=True)
class EmbeddedRecipe:
    """Epochs and learning rates of the stages that make the shipped model, on top of ``shared``: the
    :class:`TrainConfig` every stage shares (:data:`RECIPE_STAGE`)."""

    work: str = "work/embedded"  # world clips, stage checkpoints, logs
    out: str = str(PRECOMPUTED)
    shared: TrainConfig = RECIPE_STAGE
    # Stage 0: the vision tower alone, on the frame probes (shape classification and layout
    # regression; ``frames`` stage). Contrastive captions never taught this ViT shape (a linear
    # probe read 19-28%, chance 12.5%); told directly for 2,000 steps it reads 73%
    # (docs/decisions/frame-probes.md), 88.5% with the turning clips below.
    frames_epochs: int = 16  # 0 skips it (stage 1 then starts from random weights)
    frames_lr: float = 1e-3
    # Stage 0 also reads the single-object turning clips of the training splits of this many more
    # worlds (seeds seed+1, seed+2, ...; demo.world.turning_specs, ~690 clips each), and with
    # turning_video stage 2 does too. The world's own 719 turning clips are too few for a frame to
    # carry its angle; with these (and angle_weight) the turning events went from 44% / 74% to
    # 84% / 81% (docs/experiments.md, the turning directions, runs (s) to (w)).
    turning_worlds: int = 6
    turning_video: bool = True  # stages 2-3 read those clips too (none when turning_worlds is 0)
    image_epochs: int = 6
    image_schedule_epochs: int | None = None  # cosine schedule length (default: image_epochs)
    video_epochs: int = 4  # over the world's 8,000 clips and the 4,115 turning clips
    image_lr: float = 1e-3
    video_lr: float = 1e-3  # temporal head
    video_clip_lr: float = 5e-4  # pretrained towers, lower than the new head as in CLIP4Clip
    # Stage 3: the heads' fine-tuning, meanP left behind (0 skips it). It bought +4 R@1 before stage 0 and the
    # event centres; since then it costs R@1 (-0.5 in run (h), -4.6 in run (u)): off.
    order_epochs: int = 0
    order_lr: float = 2e-3
    order_clip_lr: float = 2e-4
    order_grouped: float = 0.75  # stage 3: share of one-colour batches (demo.train.data.epoch_order)
    # Stages 2-3: the temporal heads trained on one backbone (CLIP4Clip's seqTransf and CLIP2Video's tdb and
    # tdb+tab, compared on the same frame features by the evaluation); the first is the shipped pooling.
    heads: str = "tdb+tab,seqTransf,tdb"
    world_limit: int | None = None  # only for quick trials: clips per split

    @property
    def seed(self) -> int:
        return self.shared.seed

    @classmethod
    def from_flags(cls, **values: Any) -> EmbeddedRecipe:
        """A recipe from command-line values: its own fields, and the :data:`SHARED_FIELDS` of its stages."""
        shared = {k: values.pop(k) for k in SHARED_FIELDS if k in values}
        return cls(**values, shared=replace(RECIPE_STAGE, **shared))

    def stage_config(self, kind: str, **values: Any) -> TrainConfig:
        """The :class:`TrainConfig` of one stage (``kind``: frames, image or video): the shared settings, the
        loss weights that stage uses, and ``values`` (data, epochs, learning rates, pooling, init)."""
        off = [*([] if kind == "video" else VIDEO_ONLY), *([] if kind == "image" else IMAGE_ONLY)]
        changes: dict[str, Any] = {k: 0.0 for k in off}
        return replace(self.shared, stage=kind, **changes, **values)


def train_embedded(recipe: EmbeddedRecipe, progress: bool = True) -> dict[str, Path]:
    """Render the world, run the stages, copy the models into ``recipe.out``, index and card them."""
    work = Path(recipe.work)
    started = time.time()
    world = synth(work / "world", WorldConfig(seed=recipe.seed), limit=recipe.world_limit,
                  progress=progress)
    log.info("world ready in %.0f s", time.time() - started)
    spec_path = atomic_write(work / "embedded_model.json", json.dumps(EMBEDDED_MODEL, indent=2))
    jsonl = {split: Path(str(path)).with_suffix(".jsonl") for split, path in world.items()}
    image, video = _train_stages(recipe, work, spec_path, jsonl, started, progress)
    out = Path(recipe.out)
    target = out / "clip4clip-world"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(video, target, ignore=shutil.ignore_patterns("trainer_state.pt"))
    # The zero-shot stand-in is only ever scored on the world's captions: its 49,408-row token
    # table (most of its size) is cut to the tokens those need, which leaves its outputs unchanged.
    shrink_vocabulary(image, out / "clip-world-image", world_texts(work / "world"))
    log.info("trained the embedded models in %.1f min", (time.time() - started) / 60)
    index = build_embedded_index(work / "world", out / "clip4clip-world", out / "index-world",
                                 progress=progress)
    log.info("built the embedded index at %.1f min", (time.time() - started) / 60)
    note = "Test-split results: run `python -m demo evaluate --write-benchmarks` (BENCHMARKS.md)."
    shipped = recipe.heads.split(",")[0]
    write_clip4clip_card(out / "clip4clip-world", f"clip4clip-world: the embedded CLIP4Clip ({shipped})", work, note)
    write_clip4clip_card(out / "clip-world-image", "clip-world-image: the image-pretrained stand-in for "
                         "zero-shot CLIP", work, note, stages=("frames", "image"))
    return {"clip-world-image": out / "clip-world-image", "clip4clip-world": target, "index-world": index}


def _train_stages(recipe: EmbeddedRecipe, work: Path, spec_path: Path, jsonl: dict[str, Path], started: float,
                  progress: bool) -> tuple[Path, Path]:
    """Stages 0-3 in ``work``; the best image-stage and last video-stage checkpoint folders."""
    # What every stage reads, and what the two video stages share on top.
    common: dict[str, Any] = dict(train=str(jsonl["train"]), val=str(jsonl["val"]))
    videos: dict[str, Any] = dict(common, head_layers=EMBEDDED_MODEL["clip4clip"]["head_layers"])
    decoded = FrameCaches()  # each clip is decoded once for all the stages
    # the other worlds' turning clips, rendered only when a stage reads them
    read = recipe.turning_worlds > 0 and (recipe.frames_epochs > 0 or recipe.turning_video)
    turning = _with_turning(Path(jsonl["train"]), recipe, progress) if read else None
    if turning is not None and recipe.turning_video:
        videos["train"] = str(turning)

    def stage(name: str, kind: str, **values: Any) -> Path:
        best = train(recipe.stage_config(kind, **values, out=str(work / name)), progress=progress, frames=decoded)
        log.info("%s stage done at %.0f s", name, time.time() - started)
        return best

    # Stage 1 starts from stage 0's vision tower when there is one, else from the random-init config.
    model_config: str | None = str(spec_path)
    init: str | None = None
    if recipe.frames_epochs > 0:
        frames = dict(common, train=str(turning)) if turning is not None else dict(common)
        init = str(stage("frames", "frames", **frames, model_config=str(spec_path), init=None,
                         epochs=recipe.frames_epochs, lr=recipe.frames_lr, clip_lr=recipe.frames_lr))
        model_config = None
    image = stage("image", "image", **common, model_config=model_config, init=init,
                  epochs=recipe.image_epochs, schedule_epochs=recipe.image_schedule_epochs,
                  lr=recipe.image_lr, clip_lr=recipe.image_lr)
    video = stage("video", "video", **videos, init=str(image), model_config=None, pooling=f"meanP,{recipe.heads}",
                  epochs=recipe.video_epochs, lr=recipe.video_lr, clip_lr=recipe.video_clip_lr)
    # Stage 3 (off in the recipe): the heads alone, mostly on one-colour batches: colour no longer tells a
    # batch's clips apart, so shape, size, background and events have to.
    if recipe.order_epochs > 0:
        video = stage("video2", "video", **videos, init=str(video), model_config=None, pooling=recipe.heads,
                      epochs=recipe.order_epochs, lr=recipe.order_lr, clip_lr=recipe.order_clip_lr,
                      grouped_batches=recipe.order_grouped)
    return image, video


def _with_turning(train: Path, recipe: EmbeddedRecipe, progress: bool) -> Path:
    """``frames-train.jsonl`` beside ``train``: its clips and ``recipe.turning_worlds`` worlds' turning clips."""
    seeds = tuple(range(recipe.seed + 1, recipe.seed + 1 + recipe.turning_worlds))
    turning = synth_turning(train.parent, seeds, limit=recipe.world_limit, progress=progress)
    text = train.read_text(encoding="utf-8").rstrip("\n") + "\n" + turning.read_text(encoding="utf-8")
    return atomic_write(train.parent / "frames-train.jsonl", text)


def world_texts(world_dir: str | Path) -> list[str]:
    """Every caption of every split (train, val, test) of a rendered world, plus the vocabulary's words and
    phrases."""
    texts = [text for words in vocabulary().values() for text in words]
    splits = [Path(world_dir) / f"{split}.jsonl" for split in SPLITS]
    texts += [c for path in splits if path.is_file() for s in read_samples(path) for c in s.captions]
    return list(dict.fromkeys(texts))


def build_embedded_index(world_dir: str | Path, model_dir: str | Path, out: str | Path,
                         n_train: int = 1000, progress: bool = True) -> Path:
    """Index the embedded corpus (test + val + the first ``n_train`` training clips).

    Goes through the same ``index build`` path as any user folder: a ``path,caption`` CSV
    of rendered clips, decoded and embedded by the shipped model. Paths stay relative to
    the world folder, so the app can re-render a missing clip from its id.
    """
    world = Path(world_dir)
    corpus = atomic_write(world / "corpus.csv", _corpus_rows(world, n_train))
    encoder = Clip4ClipEncoder.from_pretrained(model_dir)
    report = build_index(items_from_csv(corpus), out, encoder, batch_size=16, progress=progress,
                         overwrite=True, num_workers=2, model_path=shown_path(model_dir), media_root=world)
    log.info("indexed %d clips into %s (%d skipped)", report.indexed, out, len(report.skipped))
    return Path(out)


def _corpus_rows(world: Path, n_train: int) -> str:
    """The CSV of the index's clips: every test and val row, then the rows of the first training clips."""
    table = io.StringIO(newline="")
    writer: csv.DictWriter[str] | None = None
    train_ids: set[str] = set()
    for split in ("test", "val", "train"):
        with (world / f"{split}.csv").open(newline="", encoding="utf-8") as src:
            for row in csv.DictReader(src):
                if split == "train":
                    if row["id"] not in train_ids and len(train_ids) >= n_train:
                        continue
                    train_ids.add(row["id"])
                if writer is None:
                    writer = csv.DictWriter(table, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
    return table.getvalue()


@dataclass(frozen=True)
class XClipRecipe:
    """The shipped X-CLIP: starts from the shipped CLIP4Clip and trains on the same world."""

    work: str = "work/embedded"
    out: str = str(PRECOMPUTED)
    init: str | None = None  # default: <out>/clip4clip-world
    seed: int = 0
    epochs: int = 4
    batch_size: int = 32
    lr: float = 1e-3
    # The text tower learns too (token embeddings stay frozen), on every training phrasing of each
    # class: frozen, its label embeddings are too close together ("moving left" vs "moving right"
    # cosine 0.9996) for any video feature to tell them apart.
    text_lr: float = 1e-4
    synonyms: bool = True
    limit: int | None = 6000  # unambiguous training clips (sized for ~15 min on 2 CPU cores)
    benchmarks: str = str(PRECOMPUTED.parent / "BENCHMARKS.md")


def train_embedded_xclip(recipe: XClipRecipe, progress: bool = True) -> Path:
    """Train X-CLIP from the shipped CLIP4Clip on the world, ship it with a model card and
    write its test accuracy into BENCHMARKS.md (see :mod:`demo.train.xclip`)."""
    init = Path(recipe.init) if recipe.init else Path(recipe.out) / "clip4clip-world"
    if not (init / "config.json").is_file():
        raise InputError(f"the embedded X-CLIP starts from the embedded CLIP4Clip model, but {init} has "
                         "none: run `python -m demo train --preset embedded` first (or pass --init DIR)")
    work = Path(recipe.work)
    synth(work / "world", WorldConfig(seed=recipe.seed), progress=progress)  # renders only what is missing
    config = tx.XClipTrainConfig(world=str(work / "world"), init=str(init), out=str(work / "xclip"),
                                 epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
                                 text_lr=recipe.text_lr, synonyms=recipe.synonyms, limit=recipe.limit,
                                 seed=recipe.seed)
    best = tx.train_xclip(config, progress=progress)
    target = Path(recipe.out) / "xclip-world"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(best, target)
    results = [tx.evaluate_xclip(target, work / "world", "test", reworded=r, progress=progress)
               for r in (False, True)]
    command = "python -m demo train --preset embedded-xclip"
    write_xclip_card(target, config, results, command)
    tx.write_benchmarks(results, command, recipe.benchmarks)
    return target


def evaluate_embedded_xclip(recipe: XClipRecipe, command: str, progress: bool = False) -> list[dict[str, Any]]:
    """Re-evaluate the shipped X-CLIP (``<out>/xclip-world``) on the test split of the rendered world
    in ``<work>/world`` (canonical and reworded labels) and rewrite its section of ``recipe.benchmarks``,
    recording ``command``; the results."""
    model = Path(recipe.out) / "xclip-world"
    if not (model / "config.json").is_file():
        raise InputError(f"no X-CLIP in {model}: run `python -m demo train --preset embedded-xclip` first")
    world = Path(recipe.work) / "world"
    results = [tx.evaluate_xclip(model, world, "test", reworded=r, progress=progress) for r in (False, True)]
    tx.write_benchmarks(results, command, recipe.benchmarks)
    return results
