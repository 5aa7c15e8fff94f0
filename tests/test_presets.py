"""One resolved preset: the index's own model and settings, and the same frames in every pipeline."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import moving_square_clip

from demo.cli import main
from demo.evaluate.encode import encode_corpus
from demo.evaluate.suites import WEBVID_MODELS
from demo.index.build import build_index
from demo.index.items import VideoItem
from demo.index.video_index import VideoIndex
from demo.models.encoders import Clip4ClipEncoder
from demo.presets import EMBEDDED, PRECOMPUTED, WEBVID, locate_model, resolve_preset
from demo.video.preprocess import CLIP_MEAN, CLIP_STD, load_clip4clip_clip, preprocess_reference


def test_an_index_names_the_model_unless_model_is_given(tiny_clip4clip: Path) -> None:
    manifest = {"model_path": "Searchium-ai/clip4clip-webvid150k", "pooling": "meanP",
                "sampling": "every-second", "resize": "pil-bicubic"}
    bound = resolve_preset(index="some/index").following_index(manifest)
    # a hub model recorded by the index is used, not the preset's local one (which would be refused)
    assert bound.model == "Searchium-ai/clip4clip-webvid150k"
    assert (bound.pooling, bound.frame_sampling, bound.frame_resize) == ("meanP", "every-second", "pil-bicubic")
    given = resolve_preset(index="some/index", model=str(tiny_clip4clip), pooling="seqTransf")
    bound = given.following_index(manifest)
    assert bound.model == str(tiny_clip4clip) and bound.pooling == "seqTransf"
    # the preset's own choices win over the manifest's
    assert WEBVID.following_index({"sampling": "float-fps"}).frame_sampling == "every-second"


def test_a_recorded_model_is_found_where_it_is() -> None:
    assert locate_model("precomputed/clip4clip-world", "x") == "precomputed/clip4clip-world"
    # built on another machine: the same-named local copy
    assert locate_model("/elsewhere/clip4clip-world", str(EMBEDDED.model)) == str(EMBEDDED.model)
    assert locate_model("/elsewhere/other-model", str(EMBEDDED.model)) == "/elsewhere/other-model"
    assert (PRECOMPUTED / "clip4clip-world").is_dir()


def test_search_index_uses_the_index_model(tmp_path: Path, tiny_clip4clip_other: Path, clip_folder: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`search --index DIR` with no --model loads the model the index names, whatever the preset's."""
    encoder = Clip4ClipEncoder.from_pretrained(tiny_clip4clip_other)
    items = [VideoItem(p.stem, str(p), [p.stem.replace("_", " ")]) for p in sorted(clip_folder.glob("*.mp4"))]
    build_index(items, tmp_path / "idx", encoder, batch_size=2, model_path=str(tiny_clip4clip_other), progress=False)
    assert main(["search", "red right", "--index", str(tmp_path / "idx"), "--json", "--k", "2"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_image_queries_are_resized_as_the_model_resizes_frames(tiny_clip4clip: Path) -> None:
    image = np.random.default_rng(0).integers(0, 255, (1, 48, 80, 3), dtype=np.uint8)
    encoder = Clip4ClipEncoder.from_pretrained(tiny_clip4clip, frame_resize="pil-bicubic")
    feats = encoder.frame_features(preprocess_reference(image, encoder.image_size, CLIP_MEAN, CLIP_STD))
    expected = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    assert np.allclose(encoder.encode_images(image), expected, atol=1e-6)
    plain = Clip4ClipEncoder.from_pretrained(tiny_clip4clip)
    assert not np.allclose(plain.encode_images(image), expected, atol=1e-4)


def test_the_webvid_suite_samples_every_second_as_the_preset(tiny_clip4clip: Path, tmp_path: Path) -> None:
    assert {spec.frame_sampling for spec in WEBVID_MODELS} == {WEBVID.frame_sampling} == {"every-second"}
    clip = moving_square_clip(tmp_path / "long.mp4", frames=60, fps=12.0)  # 5 s: 5 frames, not the cap's 6
    enc = encode_corpus(str(tiny_clip4clip), ["meanP"], [str(clip)], ["a red square"],
                        frame_sampling="every-second")
    assert enc.fingerprint.sampling == "every-second"
    encoder = Clip4ClipEncoder.from_pretrained(tiny_clip4clip, pooling="meanP", frame_sampling="every-second")
    frames, mask = encoder.load_video(clip)
    assert len(mask) == 5
    assert np.allclose(enc.videos["meanP"][0], encoder.encode_frames(frames[None], mask[None])[0], atol=1e-5)


def test_local_build_pads_clips_of_different_lengths(tiny_clip4clip: Path, tmp_path: Path) -> None:
    """Every-second sampling gives a clip as many frames as seconds; one batch mixes lengths."""
    short = moving_square_clip(tmp_path / "short.mp4", frames=24, fps=12.0)
    long = moving_square_clip(tmp_path / "long.mp4", frames=60, fps=12.0)
    preset = replace(resolve_preset(model=str(tiny_clip4clip), pooling="meanP"), frame_sampling="every-second")
    encoder = preset.open_encoder("cpu")
    items = [VideoItem("short", str(short), ["s"]), VideoItem("long", str(long), ["l"])]
    build_index(items, tmp_path / "idx", encoder, batch_size=2, progress=False)
    index = VideoIndex.load(tmp_path / "idx")
    for item in items:
        x, m = load_clip4clip_clip(item.path, encoder.image_size, sample_fps=encoder.sample_fps,
                                   sampling="every-second")
        alone = encoder.encode_frames(x[None], m[None])[0]
        assert np.allclose(index.vector(item.id), alone, atol=2e-3)  # the index stores float16
    assert torch.is_tensor(x)
