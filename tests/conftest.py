"""Shared fixtures: tiny random models saved with save_pretrained, and synthetic clips.

Everything here is made on the fly and offline, so the real ``from_pretrained``
loading path runs in every test without the Hugging Face hub.
"""

from __future__ import annotations

import csv
import os
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

TINY_TEXT = dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, max_position_embeddings=32, projection_dim=16)
TINY_VISION = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                   num_hidden_layers=2, num_attention_heads=2, projection_dim=16)


def save_tiny_clip4clip(folder: Path, pooling: str = "seqTransf", seed: int = 0) -> Path:
    """A random CLIP4Clip checkpoint in the shipped format (HF CLIP folder + head + tokenizer)."""
    import torch

    from demo.models.clip4clip import Clip4Clip
    from demo.models.temporal import Clip4ClipSettings
    from demo.models.tokenizer import build_clip_tokenizer_files

    torch.manual_seed(seed)
    settings = Clip4ClipSettings(pooling=pooling, sample_fps=4.0, max_frames=6, max_words=32,
                                 head_layers=1, head_heads=2)
    model = Clip4Clip.from_config(TINY_TEXT, TINY_VISION, settings)
    if model.head is not None:  # a fresh head is the identity; make it do something
        for p in model.head.parameters():
            torch.nn.init.normal_(p, std=0.2)
    model.save_pretrained(folder)
    build_clip_tokenizer_files(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clip4clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip4clip(tmp_path_factory.mktemp("models") / "tiny-c4c")


@pytest.fixture(scope="session")
def make_tiny_clip4clip() -> Any:
    """:func:`save_tiny_clip4clip` itself, for tests that need other poolings (tdb, tdb+tab)."""
    return save_tiny_clip4clip


@pytest.fixture(scope="session")
def tiny_clip4clip_other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, different model (for 'index built with another model' checks)."""
    return save_tiny_clip4clip(tmp_path_factory.mktemp("models") / "other-c4c", pooling="meanP", seed=1)


def moving_square_clip(path: Path, direction: int = 1, colour: tuple[int, int, int] = (255, 40, 40),
                       frames: int = 24, size: int = 64, fps: float = 12.0) -> Path:
    """A square sliding left (-1) or right (+1) over a dark background."""
    from demo.video.mp4 import write_mp4

    video = np.full((frames, size, size, 3), 20, dtype=np.uint8)
    for t in range(frames):
        x = int((t / max(1, frames - 1)) * (size - 16))
        x = x if direction > 0 else size - 16 - x
        video[t, 24:40, x:x + 16] = colour
    write_mp4(path, video, fps)
    return path


@pytest.fixture(scope="session")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small clips and a captions CSV (path,caption)."""
    folder = tmp_path_factory.mktemp("clips")
    colours = {"red": (255, 40, 40), "green": (40, 220, 60), "blue": (50, 80, 255)}
    rows = []
    for name, rgb in colours.items():
        for direction, word in ((1, "right"), (-1, "left")):
            path = moving_square_clip(folder / f"{name}_{word}.mp4", direction, rgb)
            rows.append((path.name, f"a {name} square moving {word}"))
    with (folder / "captions.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "caption"])
        writer.writerows(rows)
    return folder


XCLIP_NUM_FRAMES = 8
XCLIP_IMAGE_SIZE = 32

def tiny_xclip(path: Path, seed: int = 0, processor: bool = True) -> Path:
    """Save a tiny random XCLIPModel with the real CLIP tokenizer (and an XCLIPProcessor) to ``path``."""
    import torch
    from transformers import CLIPTokenizer, VideoMAEImageProcessorPil, XCLIPConfig, XCLIPModel, XCLIPProcessor

    from demo.models.tokenizer import build_clip_tokenizer_files
    from demo.video.preprocess import IMAGENET_MEAN, IMAGENET_STD

    proj = 32  # X-CLIP needs vision mit_hidden_size == projection_dim, set in both sub-configs too
    config = XCLIPConfig(
        text_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            projection_dim=proj,
        ),
        vision_config=dict(
            image_size=XCLIP_IMAGE_SIZE,
            patch_size=8,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_frames=XCLIP_NUM_FRAMES,
            mit_hidden_size=proj,
            mit_intermediate_size=37,
            mit_num_attention_heads=4,
            projection_dim=proj,
        ),
        projection_dim=proj,
        prompt_layers=1,
        prompt_num_attention_heads=4,
    )
    torch.manual_seed(seed)
    XCLIPModel(config).save_pretrained(path)
    build_clip_tokenizer_files(path)
    if processor:
        # What microsoft/xclip-base-patch32 ships: a VideoMAE image processor with ImageNet
        # mean/std. The PIL class is the one transformers 5 uses without torchvision; it
        # saves as "VideoMAEImageProcessor" inside processor_config.json.
        image_processor = VideoMAEImageProcessorPil(
            size={"shortest_edge": XCLIP_IMAGE_SIZE},
            crop_size={"height": XCLIP_IMAGE_SIZE, "width": XCLIP_IMAGE_SIZE},
            image_mean=list(IMAGENET_MEAN),
            image_std=list(IMAGENET_STD),
        )
        tokenizer = CLIPTokenizer.from_pretrained(path)
        XCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


# --- the app, launched in-process with tiny models (tests/test_app*.py, tests/test_browser.py) ---

N_CLIPS = 8


def build_world_index(root: Path, model: Path, n: int = N_CLIPS) -> Path:
    """An index of the world's first ``n`` test clips whose rows hold world-relative paths
    (``clips/test/<id>.mp4``), like the shipped one: the app must render them on demand."""
    from demo.index.build import build_index
    from demo.index.items import VideoItem
    from demo.index.video_index import VideoIndex
    from demo.models.encoders import Clip4ClipEncoder
    from demo.world import WorldConfig, clip_spec_by_id, render_to

    items = []
    for i in range(n):
        spec = clip_spec_by_id(WorldConfig(), f"test-{i:06d}")
        path = render_to(spec, root / "world" / "clips" / "test" / f"{spec.id}.mp4")
        items.append(VideoItem(spec.id, str(path), spec.captions, {"split": "test"}))
    out = root / "index"
    encoder = Clip4ClipEncoder.from_pretrained(model, device="cpu")
    build_index(items, out, encoder, progress=False, model_path=str(model))
    index = VideoIndex.load(out)
    rows = [{**row, "path": f"clips/test/{row['id']}.mp4"} for row in index.metadata]
    index.info.pop("media_root", None)  # the clips exist only in the app's cache
    VideoIndex(index.fingerprint, index.embeddings, index.codes, rows, index.caption_embeddings, index.caption_video,
               created=index.created, info=index.info).save(out, overwrite=True)
    return out


@dataclass
class RunningApp:
    service: Any  # demo.app.service.DemoService (imported lazily: gradio and torch)
    demo: Any
    url: str
    root: Path


LONG_VIDEOS = 3  # long videos in build_long_index's index


def build_long_index(root: Path, model: Path, videos: int = LONG_VIDEOS) -> Path:
    """An index of ``videos`` short "long" videos (3-4 world clips of 2-3 s each, rendered under
    ``root/long``) built with ``--segment 2 --stride 1``, like `python -m demo index build` does."""
    from demo.evaluate.longvideos import LongVideoConfig, compose, write_long_videos
    from demo.index.items import items_from_csv
    from demo.index.segment_build import build_segment_index
    from demo.models.encoders import Clip4ClipEncoder
    from demo.video.windows import SegmentSpec

    composed = compose(LongVideoConfig(videos=videos, parts=(3, 4), part_seconds=(2.0, 3.0)))
    csv = write_long_videos(root / "long", composed)
    encoder = Clip4ClipEncoder.from_pretrained(model, device="cpu")
    out = root / "long-index"
    build_segment_index(items_from_csv(csv), out, encoder, SegmentSpec(2.0, 1.0), progress=False,
                        model_path=str(model), media_root=root / "long")
    return out


def launch_app(root: Path, model: Path, index: Path | None = None, **options: Any) -> RunningApp:
    """Build the index (unless given one) and a tiny X-CLIP under ``root`` and launch the app on a
    free port."""
    from demo.app.service import AppConfig, DemoService
    from demo.app.ui import build_demo, launch

    index = index or build_world_index(root, model)
    xclip = tiny_xclip(root / "xclip")
    config = AppConfig(model=str(model), index=str(index), xclip=str(xclip), device="cpu",
                       cache_dir=str(root / "cache"), eval_limit=6, **options)
    service = DemoService.load(config)
    demo = build_demo(service)
    demo.queue(default_concurrency_limit=2, max_size=64)
    launch(demo, service, server_name="127.0.0.1", quiet=True)
    return RunningApp(service, demo, demo.local_url, root)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_clip4clip: Path) -> Iterator[RunningApp]:
    running = launch_app(tmp_path_factory.mktemp("app"), tiny_clip4clip)
    yield running
    running.demo.close()


@pytest.fixture(scope="module")
def client(app: RunningApp) -> Any:
    from gradio_client import Client

    return Client(app.url, verbose=False)


@pytest.fixture(scope="module")
def clip(app: RunningApp) -> str:
    return app.service.examples()[0]


def bad_files(folder: Path) -> dict[str, Path]:
    """Uploads that are not videos: random bytes, text, an empty file, audio only."""
    folder.mkdir(exist_ok=True)
    files = {"corrupt": folder / "corrupt.mp4", "text": folder / "notes.mp4", "empty": folder / "empty.mp4",
             "audio": folder / "tone.wav"}
    files["corrupt"].write_bytes(np.random.default_rng(0).bytes(4096))
    files["text"].write_text("this is not a video\n")
    files["empty"].write_bytes(b"")
    with wave.open(str(files["audio"]), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.sin(np.arange(8000) / 5) * 8000).astype(np.int16).tobytes())
    return files


def _write_stream(path: Path, frames: np.ndarray, fps: float, codec: str, fmt: str,
                  options: dict[str, str] | None = None, rotation: int | None = None) -> Path:
    from fractions import Fraction

    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = options or {}
        if rotation is not None:
            stream.set_display_rotation(rotation)  # the display matrix a phone writes
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def portrait_frames(frames: int = 12, width: int = 64, height: int = 128) -> np.ndarray:
    """A tall clip: a red bar near the top, a blue square sliding down below it."""
    video = np.full((frames, height, width, 3), 20, dtype=np.uint8)
    video[:, 4:24, 8:width - 8] = (255, 40, 40)
    for t in range(frames):
        y = 32 + int(t / max(1, frames - 1) * (height - 56))
        video[t, y:y + 16, 16:32] = (40, 40, 255)
    return video


def phone_clip(path: Path, rotation: int, frames: np.ndarray | None = None, fps: float = 12.0) -> Path:
    """A portrait clip as phones store it: the frames turned to landscape, with a display
    rotation of ``rotation`` degrees (counter-clockwise; 90 or -90) that shows them upright."""
    upright = portrait_frames() if frames is None else frames
    stored = np.ascontiguousarray(np.rot90(upright, k=-rotation // 90, axes=(1, 2)))
    return _write_stream(path, stored, fps, "libx264", "mp4", rotation=rotation)


def realtime_vp9_clip(path: Path, frames: int = 36, fps: float = 12.0) -> Path:
    """A .webm as a realtime VP9 encoder writes it (deadline realtime, cpu-used 8)."""
    video = np.full((frames, 96, 128, 3), 30, dtype=np.uint8)
    for t in range(frames):
        video[t, 30:60, 4 + 2 * t:28 + 2 * t] = 250  # a light square moving right
    return _write_stream(path, video, fps, "libvpx-vp9", "webm", {"deadline": "realtime", "cpu-used": "8"})
