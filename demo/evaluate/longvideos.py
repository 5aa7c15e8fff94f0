"""Long test videos for moment retrieval, composed from the embedded world's clips.

Each long video strings together 6-15 clips of one split (each used once, in no other video),
every clip slowed to last 5-8 s (:attr:`LongVideoConfig.part_seconds`): the same objects and
events, stretched, so a part is as long as a typical moment in Charades-STA (8 s on average)
and the 2-4 s world clips are not shorter than one window. A video is 30-120 s. The parts'
true start and end are known to the frame, and each part keeps its clip's captions.

:func:`write_long_videos` renders them (one part at a time: a long video is never in memory
whole) with a CSV for ``python -m demo index build`` (``path,caption,title``: every part's
canonical caption, in order) and ``parts.jsonl`` (the ground truth).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from demo.files import atomic_write
from demo.video.mp4 import write_mp4_frames
from demo.world import ClipSpec, WorldConfig, clip_spec_by_id, clip_specs, render

PARTS_FILE = "parts.jsonl"
CSV_FILE = "videos.csv"


@dataclass(frozen=True)
class LongVideoConfig:
    """Which long videos to compose: how many, of how many parts, each part how long."""

    videos: int = 24
    parts: tuple[int, int] = (6, 15)  # parts per video, inclusive
    part_seconds: tuple[float, float] = (5.0, 8.0)  # each clip is slowed to a length in this range
    split: str = "test"
    seed: int = 0


@dataclass(frozen=True)
class Part:
    """One clip inside a long video; ``start``/``end`` in seconds of the long video."""

    clip_id: str
    start: float
    end: float
    caption: str  # the clip's canonical caption (the query for this part)


@dataclass(frozen=True)
class LongVideo:
    id: str
    parts: tuple[Part, ...]
    fps: int

    @property
    def duration(self) -> float:
        return self.parts[-1].end

    @property
    def title(self) -> str:
        return f"{len(self.parts)} scenes of the world"


def compose(config: LongVideoConfig = LongVideoConfig(), world: WorldConfig = WorldConfig()) -> list[LongVideo]:  # noqa: B008
    """The long videos of ``config`` (the same list on every call)."""
    specs = clip_specs(world, config.split)
    rng = np.random.default_rng([config.seed, 24])
    order = rng.permutation(len(specs))
    lo, hi = config.parts
    counts = rng.integers(lo, hi + 1, size=config.videos)
    if counts.sum() > len(specs):
        raise ValueError(f"{config.videos} videos of up to {hi} parts need {counts.sum()} clips; "
                         f"the {config.split} split has {len(specs)}")
    videos, used = [], 0
    for v, count in enumerate(counts):
        parts, frame = [], 0
        for i in order[used:used + count]:
            spec = specs[int(i)]
            frames = int(round(rng.uniform(*config.part_seconds) * spec.fps))
            parts.append(Part(spec.id, frame / spec.fps, (frame + frames) / spec.fps, spec.captions[0]))
            frame += frames
        used += int(count)
        videos.append(LongVideo(f"long-{config.split}-{v:03d}", tuple(parts), world.fps))
    return videos


def _stretched(part: Part, world: WorldConfig) -> ClipSpec:
    spec = clip_spec_by_id(world, part.clip_id)
    return replace(spec, duration=part.end - part.start)


def frames_of(video: LongVideo, world: WorldConfig = WorldConfig()) -> Iterator[np.ndarray]:  # noqa: B008
    """The video's frames, one (H, W, 3) uint8 array at a time, part after part."""
    for part in video.parts:
        yield from render(_stretched(part, world))


def part_frame(part: Part, world: WorldConfig = WorldConfig()) -> np.ndarray:  # noqa: B008
    """The middle frame of a part (H, W, 3) uint8: an image query "a frame of that moment"."""
    frames = render(_stretched(part, world))
    return frames[len(frames) // 2]


def write_long_videos(folder: str | Path, videos: list[LongVideo], world: WorldConfig = WorldConfig()) -> Path:  # noqa: B008
    """Render ``videos`` into ``folder`` (skipping files already there from the same composition)
    with ``videos.csv`` and ``parts.jsonl``; returns the CSV's path."""
    folder = Path(folder)
    parts_file = folder / PARTS_FILE
    lines = "".join(json.dumps({"id": v.id, "path": f"{v.id}.mp4", "duration": v.duration,
                                "parts": [asdict(p) for p in v.parts]}) + "\n" for v in videos)
    same = parts_file.is_file() and parts_file.read_text(encoding="utf-8") == lines
    for v in videos:
        if not (same and (folder / f"{v.id}.mp4").is_file()):
            write_mp4_frames(folder / f"{v.id}.mp4", frames_of(v, world), v.fps, threads=1)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "path", "caption", "title"])
    for v in videos:
        writer.writerows([v.id, f"{v.id}.mp4", p.caption, v.title if n == 0 else ""] for n, p in enumerate(v.parts))
    atomic_write(folder / CSV_FILE, buf.getvalue())
    atomic_write(parts_file, lines)
    return folder / CSV_FILE


def read_parts(folder: str | Path) -> list[LongVideo]:
    """The long videos whose ground truth ``folder/parts.jsonl`` holds."""
    out = []
    for line in (Path(folder) / PARTS_FILE).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            parts = tuple(Part(**p) for p in rec["parts"])
            out.append(LongVideo(rec["id"], parts, int(round(WorldConfig().fps))))
    return out
