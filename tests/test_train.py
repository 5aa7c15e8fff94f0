"""Training smoke tests: a few steps on tiny clips, in-process through the CLI's main()."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from demo.cli import main
from demo.errors import InputError
from demo.models.encoders import Clip4ClipEncoder
from demo.train import objectives
from demo.train.batches import hard_negatives
from demo.train.config import TrainConfig
from demo.train.data import FrameCaches, Sample, epoch_order, read_samples
from demo.train.events import CLASSES, event_target
from demo.train.loop import Trainer, lr_factor, train
from demo.train.losses import caption_video_infonce
from demo.train.probes import probe_inputs
from demo.world import LAYOUT_DIM, LAYOUT_LONE, ClipAttributes, WorldObject
from tests.conftest import TINY_TEXT, TINY_VISION


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.json"
    path.write_text(json.dumps({"text": TINY_TEXT, "vision": TINY_VISION,
                                "clip4clip": {"sample_fps": 4.0, "max_frames": 6, "head_heads": 2}}))
    return path


def test_lr_schedule_warms_up_then_decays():
    factors = [lr_factor(s, 100, 0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert factors[-1] < 0.01


def test_pairs_stay_adjacent_in_epoch_order(clip_folder):
    samples = read_samples(clip_folder / "captions.csv")
    from dataclasses import replace

    samples = [replace(s, pair="p0") if i in (1, 4) else s for i, s in enumerate(samples)]
    for epoch in range(5):
        order = list(epoch_order(samples, seed=0, epoch=epoch))
        assert sorted(order) == list(range(len(samples)))
        assert abs(order.index(1) - order.index(4)) == 1


def _attributes(colour: str, background: str = "dark") -> ClipAttributes:
    """A world clip's attributes with one object of ``colour`` (all else fixed)."""
    star = WorldObject("star", colour, "small", "staying still", 64.0, 64.0, 64.0, 64.0, 11.0, 11.0, 0.0, 0.0,
                       1.0, 1.0, 0.0, 0)
    return ClipAttributes((star,), background)


def test_grouped_batches_hold_one_colour_and_keep_pairs(tmp_path):
    from pathlib import Path

    from demo.train.data import Sample

    colours = ["red", "blue", "green", "white"]
    samples = [Sample(Path(f"{i}.mp4"), (f"clip {i}",), pair=f"p{i // 2}" if i < 40 else None,
                      attributes=_attributes(colours[(i // 2) % 4])) for i in range(200)]
    for epoch in range(3):
        order = epoch_order(samples, seed=0, epoch=epoch, batch_size=8, grouped=1.0)
        assert sorted(order.tolist()) == list(range(200))
        full = [order[i:i + 8] for i in range(0, len(order) - 7, 8)]
        one_colour = [len({samples[j].attributes.objects[0].colour for j in b}) == 1 for b in full]
        assert np.mean(one_colour) >= 0.8  # only a colour's last, partial batch mixes
        positions = {int(j): k for k, j in enumerate(order)}
        # A pair stays adjacent unless a batch edge splits it (at most one pair per batch).
        assert np.mean([abs(positions[2 * p] - positions[2 * p + 1]) == 1 for p in range(20)]) >= 0.75
    mixed = epoch_order(samples, seed=0, epoch=0, batch_size=8, grouped=0.0)
    assert np.mean([len({samples[j].attributes.objects[0].colour for j in mixed[i:i + 8]}) == 1
                    for i in range(0, 200, 8)]) < 0.2


def test_training_lowers_the_loss_and_writes_a_loadable_checkpoint(clip_folder, tiny_config, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--train", str(clip_folder / "captions.csv"), "--val", str(clip_folder / "captions.csv"),
            "--out", str(out), "--model-config", str(tiny_config), "--stage", "video",
            "--pooling", "both", "--head-layers", "1", "--epochs", "20", "--batch-size", "6",
            "--lr", "1e-3", "--clip-lr", "1e-3", "--warmup", "0.05", "--workers", "1"]
    assert main(argv) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 20
    assert log[-1]["loss"] < 0.85 * log[0]["loss"]  # chance level is log(6) = 1.79
    assert set(log[-1]["val"]) == {"meanP/t2v", "meanP/v2t", "seqTransf/t2v", "seqTransf/v2t"}
    enc = Clip4ClipEncoder.from_pretrained(out / "best")
    assert enc.pooling == "seqTransf" and enc.max_words == 32 and enc.max_frames == 6
    assert (out / "last" / "trainer_state.pt").is_file()

    # Resuming a finished run with more epochs continues from the saved step.
    more = [a if a != "20" else "21" for a in argv] + ["--resume"]
    assert main(more) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, 22))


def test_bad_training_inputs(tmp_path, tiny_config):
    with pytest.raises(InputError, match="exactly one"):
        TrainConfig(train="x.csv", out=str(tmp_path))
    with pytest.raises(InputError, match="does not exist"):
        train(TrainConfig(train=str(tmp_path / "missing.csv"), out=str(tmp_path),
                          model_config=str(tiny_config)))
    bad = tmp_path / "bad.csv"
    bad.write_text("video,text\na.mp4,hello\n")
    assert main(["train", "--train", str(bad), "--out", str(tmp_path / "o"),
                 "--model-config", str(tiny_config)]) == 2


def test_image_stage_needs_still_captions(clip_folder, tiny_config, tmp_path):
    config = TrainConfig(train=str(clip_folder / "captions.csv"), out=str(tmp_path / "o"),
                         model_config=str(tiny_config), stage="image", epochs=1, batch_size=2)
    with pytest.raises(InputError, match="still-frame captions"):
        train(config, progress=False)
    torch.set_num_threads(torch.get_num_threads())


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from demo.world import WorldConfig, synth

    world = tmp_path_factory.mktemp("world")
    synth(world, WorldConfig(n_train=12, n_val=4, n_test=4), splits=("train", "val"), workers=1, progress=False)
    return world


@pytest.fixture(scope="module")
def decoded():
    """Frame caches the tests on the tiny world share, as a recipe's stages do."""
    return FrameCaches()


def _world_trainer(tiny_world, tiny_config, tmp_path, decoded, **settings) -> Trainer:
    """A trainer on the tiny world (random init) with ``settings`` on top of the defaults."""
    config = TrainConfig(train=str(tiny_world / "train.jsonl"), val=str(tiny_world / "val.jsonl"),
                         out=str(tmp_path / "o"), model_config=str(tiny_config), workers=1,
                         **{"epochs": 1, "batch_size": 6, **settings})
    return Trainer(config, progress=False, frames=decoded)


def _total(named: dict[str, torch.Tensor]) -> float:
    return sum(float(v.detach()) for v in named.values())


def test_image_stage_captions_the_frame_it_shows(tiny_world, tiny_config, tmp_path, decoded):
    from demo.world.text import POSITION_PHRASES

    trainer = _world_trainer(tiny_world, tiny_config, tmp_path, decoded, stage="image", batch_size=4,
                             frame_captions=0.75)
    samples = trainer.train_data.samples
    assert all(24 <= s.frames <= 48 and s.fps == 12 for s in samples)  # 2-4 s at 12 fps
    framed = 0
    for _ in range(5):
        batch = trainer.batch(np.arange(len(samples)))
        assert all(batch.captions[i] != c and c.startswith("a") for i, c in batch.negatives)
        assert batch.frames.shape[:2] == (len(samples), 1) and batch.masks.all()
        assert batch.shown is not None and batch.shown.shape == (len(samples),)
        for sample, caption in zip(samples, batch.captions, strict=True):
            if caption in sample.still_captions:
                continue
            framed += 1
            assert caption.startswith("an empty") or any(p in caption for p in POSITION_PHRASES), caption
    assert framed > 0


def test_video_stage_with_hard_negative_captions(tiny_world, tiny_config, tmp_path, decoded):
    trainer = _world_trainer(tiny_world, tiny_config, tmp_path, decoded, stage="video", pooling="both",
                             head_layers=1, epochs=3, hard_negatives=1.0, frame_loss=0.5)
    samples = trainer.train_data.samples
    negatives = hard_negatives(samples, np.arange(6), 1.0, np.random.default_rng(0))
    assert [i for i, _, _ in negatives] == list(range(6))
    for i, caption, named in negatives:
        assert caption not in samples[i].captions
        assert named.sum() == pytest.approx(1.0) and not np.allclose(named, event_target(samples[i].attributes))
    batch = trainer.batch(np.arange(6))
    assert [i for i, _ in batch.negatives] == list(range(6))
    assert torch.isfinite(trainer.loss(np.arange(6)))
    # the frame-caption loss: one frame of each world clip against a caption of where its objects are
    assert batch.frame_captions is not None and len(batch.frame_captions.rows) == 6
    named = objectives.frame_caption(batch, trainer.embed(batch), 0.5)
    assert torch.isfinite(named["frame_caption"]) and named["frame_caption"].requires_grad
    assert set(trainer.losses(batch)) == {"contrastive", "frame_caption"}
    best = trainer.fit()
    log = [json.loads(line) for line in (tmp_path / "o" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(np.isfinite(r["loss"]) for r in log)
    assert Clip4ClipEncoder.from_pretrained(best).pooling == "seqTransf"


def test_reversed_videos_are_negatives_for_direction_captions(tiny_world, tiny_config, tmp_path, decoded):
    from dataclasses import replace

    trainer = _world_trainer(tiny_world, tiny_config, tmp_path, decoded, stage="video", pooling="seqTransf",
                             head_layers=1, reversed_videos=1.0)
    reversible = trainer.train_reversible[:6]
    assert reversible.any(), "the tiny world should hold clips that read differently backwards"
    for sample, flag in zip(trainer.train_data.samples[:6], reversible, strict=True):
        events = {o.event for o in sample.attributes.objects}
        if events <= {"bouncing", "staying still"} and not sample.attributes.relation:
            assert not flag  # the same forwards and backwards

    # Every reversible caption of the batch gets its clip played backwards as one more negative: the
    # loss can only rise; with none to add (no reversible clip) it stays the same.
    batch = trainer.batch(np.arange(6))
    assert batch.reversed is not None and (batch.reversed == reversible).all()

    def contrastive(reversed_rows):
        return float(trainer.losses(replace(batch, reversed=reversed_rows))["contrastive"].detach())

    assert contrastive(batch.reversed) > contrastive(None)
    assert contrastive(np.zeros(6, dtype=bool)) == pytest.approx(contrastive(None))
    trainer.train_reversible = np.zeros_like(trainer.train_reversible)
    assert not trainer.batch(np.arange(6)).reversed.any()
    metrics = trainer.validate()
    assert 0.0 <= metrics["seqTransf/order"]["ahead"] <= 100.0
    assert metrics["seqTransf/order"]["clips"] == float(trainer.val_reversible.sum())


@pytest.mark.parametrize("stage", ["image", "video"])
def test_layout_loss_reads_the_frames_through_a_fitted_probe(tiny_world, tiny_config, tmp_path, decoded, stage):
    trainer = _world_trainer(tiny_world, tiny_config, tmp_path, decoded, stage=stage, pooling="seqTransf",
                             head_layers=1, frame_captions=0.5 if stage == "image" else 0.0, layout_loss=1.0)
    assert trainer.layout is not None
    data = trainer.train_data

    def layout_loss() -> float:
        per_frame = trainer.model.frame_embeddings(data.frames.float(), data.masks)
        value = trainer.layout.loss(np.arange(len(data)), per_frame, data.masks)
        assert value is not None and value.requires_grad
        return float(value.detach())

    # standardised targets: a probe that predicts the mean scores about 1; the ridge fit far less
    torch.nn.init.zeros_(trainer.layout.probe.weight)
    torch.nn.init.zeros_(trainer.layout.probe.bias)
    assert layout_loss() == pytest.approx(1.0, abs=0.05)
    trainer.layout.fit_probe(trainer.model, data)
    assert layout_loss() < 0.9
    # the weighted term is part of the training loss
    trainer.rng = np.random.default_rng(0)
    named = trainer.losses(trainer.batch(np.arange(6)))
    assert float(named["layout"].detach()) > 0 and set(named) == {"contrastive", "layout"}
    trainer.rng = np.random.default_rng(0)
    assert float(trainer.loss(np.arange(6)).detach()) == pytest.approx(_total(named), rel=1e-5)
    probe = trainer.layout
    best = trainer.fit()
    log = [json.loads(line) for line in (tmp_path / "o" / "log.jsonl").read_text().splitlines()]
    assert set(log[-1]["val"]["layout/R2"]) == {"all", "coverage", "x", "y", "angle"}
    assert (best / "config.json").is_file()
    state = torch.load(tmp_path / "o" / "last" / "trainer_state.pt", weights_only=False)
    assert state["layout_probe"]["weight"].shape == (probe.probe.out_features, trainer.model.dim)


def test_angle_weight_scales_the_angle_code_in_the_layout_loss(tiny_world, tiny_config, tmp_path, decoded):
    trainer = _world_trainer(tiny_world, tiny_config, tmp_path, decoded, stage="video", pooling="seqTransf",
                             head_layers=1, layout_loss=1.0, angle_weight=3.0)
    layout, data = trainer.layout, trainer.train_data
    assert layout is not None
    rows = np.arange(len(data))
    with torch.no_grad():
        per_frame = trainer.model.frame_embeddings(data.frames.float(), data.masks)
        loss = float(layout.loss(rows, per_frame, data.masks))
        error = (layout.probe(probe_inputs(per_frame)) - (layout.train[rows] - layout.mean) / layout.std) ** 2
    mask = layout.train_mask[rows] & data.masks.unsqueeze(-1)
    angle = torch.zeros(LAYOUT_DIM, dtype=torch.bool)
    angle[LAYOUT_LONE + 4:] = True
    assert mask[..., angle].any() and mask[..., ~angle].any()  # the tiny world has lone turned shapes
    weighted = error[mask & ~angle].sum() + 3.0 * error[mask & angle].sum()
    assert loss == pytest.approx(float(weighted / mask.sum()), rel=1e-5)
    assert loss != pytest.approx(float(error[mask].mean()), rel=1e-3)  # not the unweighted mean


def test_layout_loss_needs_world_clips(clip_folder, tiny_config, tmp_path):
    config = TrainConfig(train=str(clip_folder / "captions.csv"), out=str(tmp_path / "o"),
                         model_config=str(tiny_config), epochs=1, batch_size=2, workers=1, layout_loss=1.0)
    with pytest.raises(InputError, match="world"):
        Trainer(config, progress=False)


@pytest.mark.parametrize("stage", ["image", "video"])
def test_shape_loss_classifies_the_frames_shapes(tiny_world, tiny_config, tmp_path, decoded, stage):
    import math

    from demo.world import SHAPES

    trainer = _world_trainer(tiny_world, tiny_config, tmp_path, decoded, stage=stage, pooling="seqTransf",
                             head_layers=1, shape_loss=1.0)
    shapes = trainer.shapes
    assert shapes is not None
    data = trainer.train_data
    # targets: each clip's own shapes, in the frames where its objects show
    for i, sample in enumerate(data.samples):
        own = {o.shape for o in sample.attributes.objects}
        named = {SHAPES[k] for k in torch.nonzero(shapes.train[i].sum(0)).flatten().tolist()}
        assert named and named <= own
    per_frame = trainer.model.frame_embeddings(data.frames.float(), data.masks)
    # a zero classifier is uniform: cross-entropy log(8) against any target
    value = shapes.loss(np.arange(len(data)), per_frame, data.masks)
    assert value is not None and value.requires_grad
    assert float(value.detach()) == pytest.approx(math.log(len(SHAPES)), abs=1e-4)
    # one frame per clip in the image stage: only the frame shown counts
    shown = torch.zeros(len(data), dtype=torch.long)
    assert shapes.loss(np.arange(len(data)), per_frame[:, :1], data.masks[:, :1], shown) is not None
    # the weighted term is part of the training loss, and the classifier learns from it
    trainer.rng = np.random.default_rng(0)
    named = trainer.losses(trainer.batch(np.arange(6)))
    assert float(named["shape"].detach()) > 0 and set(named) == {"contrastive", "shape"}
    trainer.rng = np.random.default_rng(0)
    assert float(trainer.loss(np.arange(6)).detach()) == pytest.approx(_total(named), rel=1e-5)
    best = trainer.fit()
    assert float(shapes.probe.weight.detach().abs().sum()) > 0
    log = [json.loads(line) for line in (tmp_path / "o" / "log.jsonl").read_text().splitlines()]
    probe = log[-1]["val"]["shape/probe"]
    assert probe["frames"] > 0 and 0.0 <= probe["accuracy"] <= 100.0
    assert (best / "config.json").is_file()
    state = torch.load(tmp_path / "o" / "last" / "trainer_state.pt", weights_only=False)
    assert state["shape_probe"]["weight"].shape == (len(SHAPES), trainer.model.dim)


def test_frames_stage_trains_the_vision_tower_on_the_probes_alone(tiny_world, tiny_config, tmp_path, decoded):
    trainer = _world_trainer(tiny_world, tiny_config, tmp_path, decoded, stage="frames", epochs=4, lr=3e-3,
                             clip_lr=3e-3, shape_loss=1.0, layout_loss=1.0)
    assert trainer.model.head is None  # no temporal head before the video stages
    text_before = {k: v.clone() for k, v in trainer.model.text.state_dict().items()}
    vision_before = {k: v.clone() for k, v in trainer.model.vision.state_dict().items()}
    indices = np.arange(6)
    trainer.rng = np.random.default_rng(0)
    batch = trainer.batch(indices)
    assert batch.shown is not None and batch.shown.shape == (6,) and not batch.captions
    named = trainer.losses(batch)
    assert set(named) == {"layout", "shape"}  # the probe terms alone
    first = _total(named)
    best = trainer.fit()
    # the text tower is untouched (no caption is encoded), the vision tower learned
    assert all(torch.equal(v, trainer.model.text.state_dict()[k]) for k, v in text_before.items())
    assert any(not torch.equal(v, trainer.model.vision.state_dict()[k]) for k, v in vision_before.items())
    log = [json.loads(line) for line in (tmp_path / "o" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and set(log[-1]["val"]) == {"layout/R2", "shape/probe"}
    trainer.rng = np.random.default_rng(0)  # the same frames as before training
    assert float(trainer.loss(indices).detach()) < first  # the probe terms fall
    # the checkpoint is an ordinary model folder the next stage starts from
    image = TrainConfig(train=str(tiny_world / "train.jsonl"), val=str(tiny_world / "val.jsonl"),
                        out=str(tmp_path / "i"), init=str(best), stage="image", epochs=1, batch_size=6,
                        workers=1, shape_loss=1.0)
    assert (train(image, progress=False) / "config.json").is_file()
    with pytest.raises(InputError, match="frame probes"):
        TrainConfig(train="t.jsonl", out="o", model_config="m.json", stage="frames")


def test_shape_loss_needs_world_clips(clip_folder, tiny_config, tmp_path):
    config = TrainConfig(train=str(clip_folder / "captions.csv"), out=str(tmp_path / "o"),
                         model_config=str(tiny_config), epochs=1, batch_size=2, workers=1, shape_loss=1.0)
    with pytest.raises(InputError, match="world"):
        Trainer(config, progress=False)


def test_frame_caches_decode_each_split_once(clip_folder):
    import os

    samples = read_samples(clip_folder / "captions.csv")[:3]
    caches = FrameCaches()
    first = caches.get(samples, image_size=32, sample_fps=2.0, max_frames=4, workers=1, progress=False)
    assert caches.get(samples, image_size=32, sample_fps=2.0, max_frames=4, workers=1, progress=False) is first
    other = caches.get(samples, image_size=32, sample_fps=1.0, max_frames=4, workers=1, progress=False)
    assert other is not first and other.frames.shape == first.frames.shape
    # a file written again (new mtime) is decoded again
    info = samples[0].path.stat()
    os.utime(samples[0].path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))
    again = caches.get(samples, image_size=32, sample_fps=2.0, max_frames=4, workers=1, progress=False)
    assert again is not first and torch.equal(again.frames, first.frames)
    # each caller owns its caches: another one decodes for itself
    assert FrameCaches().get(samples, image_size=32, sample_fps=2.0, max_frames=4, workers=1,
                             progress=False) is not again


def test_frame_caches_serve_a_subset_of_a_kept_split(clip_folder, monkeypatch):
    import demo.train.data as data

    samples = read_samples(clip_folder / "captions.csv")[:3]
    caches = FrameCaches()
    whole = caches.get(samples, image_size=32, sample_fps=2.0, max_frames=4, workers=1, progress=False)
    monkeypatch.setattr(data, "load_clip4clip_clip", lambda *a, **k: pytest.fail("decoded again"))
    part = caches.get([samples[2], samples[0]], image_size=32, sample_fps=2.0, max_frames=4, workers=1,
                      progress=False)
    assert part.samples == [samples[2], samples[0]] and part.skipped == 0
    assert torch.equal(part.frames, whole.frames[[2, 0]]) and torch.equal(part.masks, whole.masks[[2, 0]])
    # other settings, or a clip the kept cache was never asked for, decode anew
    with pytest.raises(pytest.fail.Exception, match="decoded again"):
        caches.get(samples[:1], image_size=32, sample_fps=1.0, max_frames=4, workers=1, progress=False)
    extra = Sample(samples[0].path, ("another caption",))
    with pytest.raises(pytest.fail.Exception, match="decoded again"):
        caches.get([samples[1], extra], image_size=32, sample_fps=2.0, max_frames=4, workers=1, progress=False)


def test_contrastive_with_several_own_negatives_matches_brute_force():
    gen = torch.Generator().manual_seed(0)
    captions = ["a", "b", "c", "d"]
    negatives = [(0, "x"), (2, "y"), (0, "z")]  # clip 0 has two own negatives, clip 2 one
    text = torch.nn.functional.normalize(torch.randn(7, 8, generator=gen), dim=-1)
    videos = torch.nn.functional.normalize(torch.randn(4, 8, generator=gen), dim=-1)
    scale = torch.tensor(10.0)
    got = float(caption_video_infonce(text, videos, captions, negatives, scale))
    logits = (scale * text @ videos.t()).numpy()  # (7, 4): rows 4-6 are the negatives
    owner = {4: 0, 5: 2, 6: 0}

    def lse(values: list[float]) -> float:
        return float(np.log(np.sum(np.exp(values))))

    t2v = np.mean([lse(list(logits[i])) - logits[i, i] for i in range(4)])
    v2t = np.mean([lse([logits[i, j] for i in range(4)] + [logits[k, j] for k, o in owner.items() if o == j])
                   - logits[j, j] for j in range(4)])
    assert got == pytest.approx((t2v + v2t) / 2, rel=1e-5)


def test_compile_flag_reaches_the_trainer_and_checkpoints_stay_plain(clip_folder, tiny_config, tmp_path,
                                                                     monkeypatch):
    import demo.train.loop as train_module

    calls = []
    real = train_module.compile_towers
    monkeypatch.setattr(train_module, "compile_towers",
                        lambda model, device: calls.append(device) or real(model, device))
    monkeypatch.setattr(train_module.shutil, "which", lambda name: None)  # no C++ compiler: warn, train eagerly
    out = tmp_path / "run"
    assert main(["train", "--train", str(clip_folder / "captions.csv"), "--out", str(out), "--model-config",
                 str(tiny_config), "--stage", "video", "--epochs", "1", "--batch-size", "6", "--workers", "1",
                 "--compile"]) == 0
    assert calls == ["cpu"]
    assert Clip4ClipEncoder.from_pretrained(out / "best").max_frames == 6
    # --no-compile turns it off (for a recipe that compiles by default); unset leaves the default
    from demo.cli.train import add_train_arguments

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    assert parser.parse_args(["--no-compile"]).compile is False
    assert parser.parse_args(["--compile"]).compile is True
    assert parser.parse_args([]).compile is None


def test_train_flags_the_chosen_path_does_not_use_are_an_error(tmp_path, tiny_config, capsys):
    work = tmp_path / "w"
    assert main(["train", "--preset", "embedded", "--work", str(work), "--epochs", "3", "--lr", "1e-4"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--epochs, --lr" in error and "--batch-size" in error, error
    assert not work.exists()  # refused before rendering anything
    assert main(["train", "--preset", "embedded-xclip", "--work", str(work), "--stage", "image"]) == 2
    assert "--stage" in capsys.readouterr().err
    assert main(["train", "--preset", "embedded-xclip", "--evaluate-only", "--epochs", "2"]) == 2
    assert "--epochs" in capsys.readouterr().err
    assert main(["train", "--train", "t.csv", "--out", str(tmp_path / "o"), "--model-config", str(tiny_config),
                 "--work", str(work)]) == 2
    assert "train without --preset does not use --work" in capsys.readouterr().err
    assert not work.exists()


def test_compiled_towers_keep_their_parameter_names(monkeypatch):
    from demo.models.clip4clip import Clip4Clip
    from demo.models.temporal import Clip4ClipSettings
    from demo.train.build import compile_towers

    compiled = []
    real = torch.nn.Module.compile

    def spy(module, *args, **kwargs):
        compiled.append((module, kwargs.get("dynamic")))
        return real(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "compile", spy)
    model = Clip4Clip.from_config(TINY_TEXT, TINY_VISION, Clip4ClipSettings())
    names = list(model.state_dict())
    assert compile_towers(model, "cpu")
    assert list(model.state_dict()) == names  # in place: optimizer state and checkpoints unchanged
    assert compiled == [(model.text, True), (model.vision, True)]  # both towers, for dynamic shapes


@pytest.mark.slow
def test_embedded_recipe_runs_every_stage_and_ships_loadable_folders(tmp_path):
    from demo.train.recipes import EmbeddedRecipe, train_embedded

    recipe = EmbeddedRecipe.from_flags(work=str(tmp_path / "w"), out=str(tmp_path / "pre"), frames_epochs=1,
                                       image_epochs=1, video_epochs=1, order_epochs=1, batch_size=4, compile=False,
                                       world_limit=12, turning_worlds=1)
    shipped = train_embedded(recipe, progress=False)
    # stage 0 and the video stages also read another world's turning clips; stage 1 only the world's own
    world_dir = tmp_path / "w" / "world"
    configs = {folder: json.loads((tmp_path / "w" / folder / "train_config.json").read_text())
               for folder in ("frames", "image", "video", "video2")}
    rows = (world_dir / "frames-train.jsonl").read_text().splitlines()
    assert len(rows) == 12 + 12 and sum('"turning-1-' in row for row in rows) == 12
    assert {folder: Path(c["train"]).name for folder, c in configs.items()} == {
        "frames": "frames-train.jsonl", "image": "train.jsonl", "video": "frames-train.jsonl",
        "video2": "frames-train.jsonl"}
    assert {folder: c["stage"] for folder, c in configs.items()} == {
        "frames": "frames", "image": "image", "video": "video", "video2": "video"}
    assert {c["angle_weight"] for c in configs.values()} == {8.0}
    # stage 1 starts from stage 0's vision tower, and every stage after it from the one before
    image_config = json.loads((tmp_path / "w" / "image" / "train_config.json").read_text())
    assert image_config["init"] == str(tmp_path / "w" / "frames" / "best") and image_config["model_config"] is None
    encoder = Clip4ClipEncoder.from_pretrained(shipped["clip4clip-world"])
    assert encoder.pooling == "tdb+tab"  # the recipe ships CLIP2Video's alignment head: 2 x 128 wide
    assert encoder.encode_texts(["a red circle moving left"]).shape == (1, 256)
    card = (shipped["clip4clip-world"] / "README.md").read_text()
    assert "stage 0" in card and "shape accuracy" in card and "stage 3" in card
    assert card.count("12 single-object turning clips of other worlds") == 3  # stages 0, 2 and 3
    assert "angle code x8" in card
    assert "stage 0" in (shipped["clip-world-image"] / "README.md").read_text()
    assert (shipped["index-world"] / "manifest.json").is_file()


def test_every_head_trains_on_one_backbone_with_the_event_centres(tiny_world, tiny_config, tmp_path, decoded):
    trainer = _world_trainer(tiny_world, tiny_config, tmp_path, decoded, stage="video",
                             pooling="meanP,tdb+tab,seqTransf,tdb", head_layers=1, hard_negatives=1.0,
                             reversed_videos=1.0, event_loss=1.0, epochs=2)
    model = trainer.model
    assert model.settings.pooling == "tdb+tab" and sorted(model.heads) == ["seqTransf", "tdb", "tdb+tab"]
    batch = trainer.batch(np.arange(6))
    assert batch.negative_events is not None and batch.negative_events.shape == (6, len(CLASSES))
    emb = trainer.embed(batch)
    assert set(emb.videos) == {"meanP", "seqTransf", "tdb", "tdb+tab"} and set(emb.backwards) == set(model.heads)
    assert emb.videos["tdb+tab"].shape[1] == emb.head_text["tdb+tab"].shape[1] == 2 * model.dim
    named = trainer.losses(batch)
    assert set(named) == {"contrastive", "events"} and float(named["events"].detach()) > 0
    # the event term reaches both towers, the heads and the centres
    named["events"].backward()
    assert trainer.events is not None and trainer.events.centres.grad is not None
    for part in (model.text, model.vision, model.heads["tdb"]):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    trainer.optimizer.zero_grad()
    best = trainer.fit()
    log = [json.loads(line) for line in (tmp_path / "o" / "log.jsonl").read_text().splitlines()]
    val = log[-1]["val"]
    assert {"meanP/t2v", "seqTransf/order", "tdb/order", "tdb+tab/t2v"} <= set(val)
    assert set(val["events/accuracy"]) == {"text", "seqTransf", "tdb", "tdb+tab"}
    encoder = Clip4ClipEncoder.from_pretrained(best)
    assert encoder.pooling == "tdb+tab" and encoder.dim == 2 * model.dim
    assert sorted(Clip4ClipEncoder.from_pretrained(best, pooling="tdb").model.heads) == ["seqTransf", "tdb", "tdb+tab"]
    # a later stage can go on with one of them
    config = TrainConfig(train=str(tiny_world / "train.jsonl"), val=str(tiny_world / "val.jsonl"), workers=1,
                         out=str(tmp_path / "2"), init=str(best), pooling="tdb", head_layers=1, batch_size=6)
    again = Trainer(config, progress=False, frames=decoded).model
    assert list(again.heads) == ["tdb"]
    saved = Clip4ClipEncoder.from_pretrained(best, pooling="tdb").model.heads["tdb"].frame_position.weight
    assert torch.equal(again.heads["tdb"].frame_position.weight.detach(), saved.detach())


def test_look_centres_read_what_captions_name_and_clips_show(tiny_world, tiny_config, tmp_path, decoded):
    from demo.train.looks import LOOKS, named

    assert named("the noisy background behind a star", "colour").sum() == 0  # names no colour: left out
    assert named("two stars cross paths", "shape").tolist() == named("two stars", "shape").tolist()  # a relation
    with pytest.raises(InputError, match="looks"):
        TrainConfig(train="x", out=str(tmp_path), model_config=str(tiny_config), looks="colour,texture")
    trainer = _world_trainer(tiny_world, tiny_config, tmp_path, decoded, stage="video", pooling="meanP,tdb",
                             head_layers=1, look_negatives=1.0, look_loss=1.0, looks="colour,shape,size", epochs=1)
    batch = trainer.batch(np.arange(6))
    named_terms = trainer.losses(batch)
    assert {"contrastive", "looks"} <= set(named_terms) and float(named_terms["looks"].detach()) > 0
    # each clip's target is its objects' colours, shapes and sizes, as its attributes say
    for look in ("colour", "shape", "size"):
        for row in range(6):
            shown = {LOOKS[look][i] for i in np.flatnonzero(trainer.look_targets[look][row].numpy())}
            assert shown == {getattr(o, look) for o in trainer.train_data.samples[row].attributes.objects}
    named_terms["looks"].backward()  # reaches both towers, the head and every look's centres
    assert trainer.looks is not None
    assert all(c.centres.grad is not None for c in trainer.looks.centres.values())
    for part in (trainer.model.text, trainer.model.vision, trainer.model.heads["tdb"]):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    trainer.optimizer.zero_grad()
    trainer.fit()
    state = torch.load(tmp_path / "o" / "last" / "trainer_state.pt", weights_only=False)
    assert state["looks"]["centres.colour.centres"].shape == (len(LOOKS["colour"]), trainer.model.dim)  # --resume


def test_a_new_clip2video_head_starts_from_the_seqtransf_head(tiny_world, tiny_clip4clip, tmp_path, decoded):
    config = TrainConfig(train=str(tiny_world / "train.jsonl"), val=str(tiny_world / "val.jsonl"), workers=1,
                         out=str(tmp_path / "o"), init=str(tiny_clip4clip), pooling="tdb", head_layers=1)
    model = Trainer(config, progress=False, frames=decoded).model
    seq = Clip4ClipEncoder.from_pretrained(tiny_clip4clip).model.head
    assert seq is not None and list(model.heads) == ["tdb"]
    assert torch.equal(model.heads["tdb"].frame_position.weight.detach(), seq.frame_position.weight.detach())


def test_pooling_lists_are_checked(tiny_config, tmp_path):
    with pytest.raises(InputError, match="pooling"):
        TrainConfig(train="x", out=str(tmp_path), model_config=str(tiny_config), pooling="meanP,maxP")
    assert TrainConfig(train="x", out="o", model_config="m", pooling="both").heads == ["seqTransf"]
    assert TrainConfig(train="x", out="o", model_config="m", pooling="meanP, tdb").poolings == ["meanP", "tdb"]


def test_the_recipe_builds_every_stage_on_one_train_config():
    """EmbeddedRecipe repeats none of TrainConfig's fields: the stages share one TrainConfig, and each loss
    weight reaches only the stages that use it."""
    from dataclasses import fields

    from demo.train.recipes import RECIPE_STAGE, SHARED_FIELDS, EmbeddedRecipe

    # `out` is the recipe's own (where the shipped models go), not a stage's checkpoint folder
    assert {f.name for f in fields(EmbeddedRecipe)} & {f.name for f in fields(TrainConfig)} == {"out"}
    recipe = EmbeddedRecipe.from_flags(batch_size=8, hard_negatives=0.5, frames_epochs=2)
    assert recipe.frames_epochs == 2 and recipe.shared.batch_size == 8
    frames = recipe.stage_config("frames", train="t", out="o", model_config="m")
    image = recipe.stage_config("image", train="t", out="o", init="i", model_config=None)
    video = recipe.stage_config("video", train="t", out="o", init="i", model_config=None)
    assert [c.stage for c in (frames, image, video)] == ["frames", "image", "video"]
    assert {c.batch_size for c in (frames, image, video)} == {8}
    assert frames.hard_negatives == image.hard_negatives == 0 and video.hard_negatives == 0.5
    assert frames.event_loss == image.event_loss == 0 and video.event_loss == RECIPE_STAGE.event_loss > 0
    assert image.frame_captions == RECIPE_STAGE.frame_captions > 0
    assert frames.frame_captions == video.frame_captions == 0
    assert {c.angle_weight for c in (frames, image, video)} == {RECIPE_STAGE.angle_weight}
    assert set(SHARED_FIELDS) <= {f.name for f in fields(TrainConfig)}
    looks = EmbeddedRecipe.from_flags(look_loss=0.3, looks="colour")  # `train --preset embedded --look-loss 0.3 ...`
    assert looks.stage_config("video", train="t", out="o").look_loss == 0.3
    assert looks.stage_config("image", train="t", out="o").look_loss == 0 and looks.shared.looks == "colour"


def test_look_negatives_add_colour_or_size_changed_captions(tiny_world, tiny_config, tmp_path, decoded):
    trainer = _world_trainer(tiny_world, tiny_config, tmp_path, decoded, stage="video", pooling="seqTransf",
                             head_layers=1, hard_negatives=1.0, look_negatives=1.0, event_loss=1.0)
    batch = trainer.batch(np.arange(6))
    # each clip: its event-changed caption, then its colour- or size-changed one (same events)
    assert [i for i, _ in batch.negatives] == [*range(6), *range(6)]
    samples = trainer.train_data.samples
    for position, caption in batch.negatives[6:]:
        assert caption not in samples[position].captions
    assert batch.negative_events is not None and len(batch.negative_events) == 12
    assert np.allclose(batch.negative_events[6:], [event_target(samples[i].attributes) for i in range(6)])
    assert torch.isfinite(trainer.loss(np.arange(6)))
