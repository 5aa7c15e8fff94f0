"""Training smoke tests: a few steps on tiny clips, in-process through the CLI's main()."""

import json

import pytest
import torch

from demo.cli import main
from demo.data import epoch_order, read_samples
from demo.encoders import Clip4ClipEncoder
from demo.errors import InputError
from demo.train import TrainConfig, lr_factor, train
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
