"""Long videos as moments: windows and their sampling, the streaming decode, the segment builder
(resumable, damaged files, refusals), moment merging and metrics, and the CLI end to end."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import LONG_VIDEOS, build_long_index, moving_square_clip

from demo.cli import main
from demo.errors import IndexFormatError, InputError
from demo.evaluate.longvideos import LongVideoConfig, compose, read_parts
from demo.evaluate.metrics import moment_metrics, temporal_iou
from demo.index.items import VideoItem
from demo.index.segment_build import build_segment_index
from demo.index.segments import plan_video, row_id
from demo.index.store import read_index_folder
from demo.index.video_index import VideoIndex
from demo.models.encoders import Clip4ClipEncoder
from demo.search.moments import MomentSearch, video_moments
from demo.video.decode import read_frames
from demo.video.sampling import clip4clip_indices
from demo.video.windows import SegmentSpec, plan_windows, stream_windows

# ------------------------------------------------------------------------------ windows


@pytest.mark.parametrize(("segment", "stride", "words"), [
    (0, None, "positive"), (-4, 2, "positive"), (8, 10, "longer than --segment"), (float("nan"), 1, "positive"),
])
def test_bad_segmenting_is_refused_in_one_line(segment, stride, words):
    with pytest.raises(InputError) as err:
        SegmentSpec.of(segment, stride)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_windows_cover_the_video_and_a_short_video_is_one_window():
    spec = SegmentSpec(8, 4)
    assert spec.bounds(3.5) == [(0.0, 3.5)]
    assert spec.bounds(8.0) == [(0.0, 8.0)]
    bounds = spec.bounds(31.0)
    assert bounds[0] == (0.0, 8.0) and bounds[-1][1] == 31.0
    assert all(b[0] - a[0] == 4 for a, b in zip(bounds, bounds[1:], strict=False))
    # no overlap: a tail shorter than half a window joins the last window
    assert SegmentSpec(8, 8).bounds(17.0) == [(0.0, 8.0), (8.0, 17.0)]
    assert SegmentSpec.of(6) == SegmentSpec(6, 3) and SegmentSpec.of(None) is None


def test_each_window_samples_like_a_clip_cut_there():
    windows = plan_windows(num_frames=240, fps=12.0, spec=SegmentSpec(4, 2), sample_fps=3.0, max_frames=8)
    assert len(windows) == 9
    w = windows[3]
    assert (w.start, w.end) == (6.0, 10.0)
    assert np.array_equal(w.indices, 72 + clip4clip_indices(48, 12.0, 3.0, 8))
    # windows on the sampling grid share frames with their neighbours
    assert len(set(windows[3].indices) & set(windows[4].indices)) >= 4


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """A 12 s video of a square crossing the frame, keyframes every second."""
    path = tmp_path_factory.mktemp("long") / "square.mp4"
    frames = np.full((144, 64, 64, 3), 20, np.uint8)
    for t in range(144):
        x = int(t / 143 * 48)
        frames[t, 24:40, x:x + 16] = (255, 40, 40)
    write_with_keyframes(path, frames, 12)
    return path


def write_with_keyframes(path: Path, frames: np.ndarray, fps: int) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"g": str(fps), "keyint_min": str(fps), "sc_threshold": "0", "bf": "0"}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())


def test_stream_hands_each_window_its_frames_and_resumes_midway(long_clip):
    windows = plan_windows(144, 12.0, SegmentSpec(4, 2), 3.0, 8)
    got = list(stream_windows(long_clip, windows, 12.0, short_side=64))
    assert [g.window.number for g in got] == list(range(len(windows)))
    for g in got[::3]:
        assert g.frames is not None
        reference = read_frames(long_clip, g.window.indices)
        assert g.frames.shape == reference.shape and np.abs(g.frames.astype(int) - reference).mean() < 2
    resumed = list(stream_windows(long_clip, windows[3:], 12.0, short_side=64))
    assert [g.window.number for g in resumed] == list(range(3, len(windows)))
    assert np.array_equal(resumed[0].frames, got[3].frames)


def damage_second(path: Path, seconds: tuple[int, int]) -> Path:
    """A copy of ``path`` with the packets of the given seconds zeroed (a broken middle)."""
    import av

    data = bytearray(path.read_bytes())
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            at = float(packet.pts * stream.time_base) if packet.pts is not None else -1.0
            if packet.size and seconds[0] <= at < seconds[1]:
                data[packet.pos:packet.pos + packet.size] = bytes(packet.size)
    out = path.with_name("broken-" + path.name)
    out.write_bytes(bytes(data))
    return out


def test_a_broken_middle_loses_only_its_windows(long_clip):
    broken = damage_second(long_clip, (5, 7))
    windows = plan_windows(144, 12.0, SegmentSpec(2, 2), 3.0, 8)
    got = {g.window.number: g for g in stream_windows(broken, windows, 12.0, short_side=64)}
    assert sorted(got) == list(range(6))
    lost = [n for n, g in got.items() if g.frames is None]
    assert lost == [2, 3] and all("could not be decoded" in (got[n].reason or "") for n in lost)
    assert all(got[n].frames is not None for n in (0, 1, 4, 5))


# ------------------------------------------------------------------------------ moments


def test_adjacent_windows_that_score_alike_merge_into_one_moment():
    starts, ends = np.arange(0, 20, 2.0), np.arange(0, 20, 2.0) + 4
    scores = np.array([.1, .1, .8, .78, .77, .2, .1, .5, .1, .1])
    spans = video_moments(starts, ends, scores, limit=3, margin=0.05)
    assert [(s.first, s.last) for s in spans[:2]] == [(2, 4), (7, 7)]
    assert video_moments(starts, ends, scores, limit=1, margin=-1)[0].first == 2  # no merging
    # later moments never overlap earlier ones
    bounds = [(starts[s.first], ends[s.last]) for s in spans]
    assert all(temporal_iou(a, b) == 0 for i, a in enumerate(bounds) for b in bounds[i + 1:])


def test_a_moment_is_captioned_by_the_part_it_covers_not_the_video():
    """A long video of three parts, each window showing one part: a moment's caption is its part's
    (the caption whose embedding is nearest the moment's best window), not the video's first."""
    from demo.index.segments import window_rows
    from demo.models.fingerprint import ModelFingerprint

    parts = ["a red circle moving left", "a blue square growing", "a green star bouncing"]
    basis = np.eye(8, dtype=np.float32)
    rows = window_rows("long-0", "long-0.mp4", [(0.0, 4.0), (4.0, 8.0), (8.0, 12.0)],
                       {"captions": parts, "title": "3 scenes of the world"})
    rows += window_rows("long-1", "long-1.mp4", [(0.0, 4.0)], {"captions": ["a white heart"]})
    index = VideoIndex.from_arrays(ModelFingerprint("m", "meanP", 8, 32, 4, 1.0), basis[[0, 1, 2, 3]], rows,
                                   basis[[0, 1, 2, 3]], [0, 0, 0, 3])
    index.info["segments"] = {"segment": 4.0, "stride": 4.0}
    search = MomentSearch(index)
    for part, caption in enumerate(parts):
        best = search.search(basis[part], k=1)[0]
        assert (best.id, best.start, best.caption) == ("long-0", 4.0 * part, caption)
        assert [m.caption for m in search.in_video(basis[part], "long-0", k=1)] == [caption]
    assert search.search(basis[3], k=1)[0].caption == "a white heart"


def test_moment_metrics_against_a_brute_force_count():
    rng = np.random.default_rng(0)
    truth = [(f"v{rng.integers(3)}", float(s), float(s + 4)) for s in rng.uniform(0, 20, 40)]
    found = [[(f"v{rng.integers(3)}", float(s), float(s + rng.uniform(2, 8))) for s in rng.uniform(0, 20, 6)]
             for _ in truth]
    metrics = moment_metrics(found, truth)
    for k in (1, 5):
        for t in (0.5, 0.7):
            brute = np.mean([any(v == tv and temporal_iou((s, e), (ts, te)) >= t for v, s, e in f[:k])
                             for f, (tv, ts, te) in zip(found, truth, strict=True)])
            assert metrics[f"R@{k} IoU>={t:g}"] == pytest.approx(100 * brute)


# ------------------------------------------------------------------------ the builder


@pytest.fixture(scope="module")
def long_index(tmp_path_factory, tiny_clip4clip) -> Path:
    return build_long_index(tmp_path_factory.mktemp("long-index"), tiny_clip4clip)


def test_a_segment_index_holds_one_row_per_window(long_index):
    index = VideoIndex.load(long_index)
    assert index.info["segments"] == {"segment": 2.0, "stride": 1.0}
    rows = index.metadata
    assert {r["video_id"] for r in rows} == {f"long-test-{i:03d}" for i in range(LONG_VIDEOS)}
    videos = read_parts(long_index.parent / "long")
    first = [r for r in rows if r["video_id"] == videos[0].id]
    assert first[0]["start"] == 0 and first[-1]["end"] == pytest.approx(videos[0].duration, abs=1e-3)
    assert [r["id"] for r in first[:2]] == [f"{videos[0].id}@0", f"{videos[0].id}@1"]
    assert len(first[0]["captions"]) == len(videos[0].parts) and first[0]["title"]
    assert all(r["captions"] == [] for r in first[1:])  # captions sit on the first window only


def test_the_builder_matches_cutting_each_window_out_as_a_clip(long_index, tiny_clip4clip):
    import torch

    from demo.video.preprocess import CLIP_MEAN, CLIP_STD, preprocess

    encoder = Clip4ClipEncoder.from_pretrained(tiny_clip4clip, device="cpu")
    index = VideoIndex.load(long_index)
    video = read_parts(long_index.parent / "long")[1]
    plan = plan_video(long_index.parent / "long" / f"{video.id}.mp4", SegmentSpec(2, 1), encoder)
    for window in plan.windows[::4]:
        frames = read_frames(long_index.parent / "long" / f"{video.id}.mp4", window.indices, short_side=32)
        x = preprocess(frames, 32, CLIP_MEAN, CLIP_STD)
        clip = encoder.encode_frames(x[None], torch.ones(1, len(x), dtype=torch.bool))[0]
        assert float(clip @ index.vector(row_id(video.id, window.start))) > 0.99


def test_an_interrupted_build_resumes_inside_a_video(tmp_path, tiny_clip4clip, monkeypatch):
    from demo.evaluate.longvideos import write_long_videos
    from demo.index.items import items_from_csv

    videos = compose(LongVideoConfig(videos=2, parts=(3, 3), part_seconds=(3.0, 3.0), seed=5))
    items = items_from_csv(write_long_videos(tmp_path / "long", videos))
    encoder = Clip4ClipEncoder.from_pretrained(tiny_clip4clip, device="cpu")
    calls = {"n": 0}
    original = Clip4ClipEncoder.pool_frames

    def flaky(self, features, mask):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, features, mask)

    monkeypatch.setattr(Clip4ClipEncoder, "pool_frames", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_segment_index(items, tmp_path / "index", encoder, SegmentSpec(2, 1), batch_size=4, progress=False)
    assert (tmp_path / "index.partial").is_dir() and not (tmp_path / "index").exists()
    calls["n"] = 100
    report = build_segment_index(items, tmp_path / "index", encoder, SegmentSpec(2, 1), batch_size=4,
                                 progress=False)
    assert report.resumed_from == 8 and report.videos == 2 and not (tmp_path / "index.partial").exists()
    monkeypatch.setattr(Clip4ClipEncoder, "pool_frames", original)
    fresh = build_segment_index(items, tmp_path / "fresh", encoder, SegmentSpec(2, 1), progress=False)
    a, b = VideoIndex.load(tmp_path / "index"), VideoIndex.load(tmp_path / "fresh")
    assert a.ids == b.ids and fresh.windows == report.windows
    assert np.allclose(np.asarray(a.embeddings, np.float32), np.asarray(b.embeddings, np.float32), atol=2e-3)


def test_segmenting_a_whole_video_index_or_its_work_folder_is_refused(tmp_path, tiny_clip4clip, clip_folder):
    from demo.index.build import build_index
    from demo.index.items import items_from_folder

    encoder = Clip4ClipEncoder.from_pretrained(tiny_clip4clip, device="cpu")
    items = items_from_folder(clip_folder)[:2]
    build_index(items, tmp_path / "whole", encoder, progress=False)
    with pytest.raises(IndexFormatError, match="built without --segment") as err:
        build_segment_index(items, tmp_path / "whole", encoder, SegmentSpec(1, 1), progress=False)
    assert "\n" not in str(err.value)
    (tmp_path / "half.partial").mkdir()
    (tmp_path / "half.partial" / "fingerprint.json").write_text(json.dumps(encoder.fingerprint.to_dict()))
    with pytest.raises(IndexFormatError, match="started without --segment, this build runs with --segment 1"):
        build_segment_index(items, tmp_path / "half", encoder, SegmentSpec(1, 1), progress=False)
    (tmp_path / "half2.partial").mkdir()
    (tmp_path / "half2.partial" / "fingerprint.json").write_text(json.dumps(
        {**encoder.fingerprint.to_dict(), "segments": {"segment": 1.0, "stride": 1.0}}))
    with pytest.raises(IndexFormatError, match="started with --segment 1 --stride 1, this build runs without"):
        build_index(items, tmp_path / "half2", encoder, progress=False)


def test_a_short_video_is_one_window_and_a_broken_middle_keeps_the_rest(tmp_path, tiny_clip4clip, long_clip):
    folder = tmp_path / "videos"
    folder.mkdir()
    moving_square_clip(folder / "short.mp4", frames=18)  # 1.5 s: shorter than one window
    damage_second(long_clip, (5, 7)).rename(folder / "broken.mp4")
    (folder / "nothing.mp4").write_bytes(b"not a video")
    out = tmp_path / "index"
    items = [VideoItem(p.stem, str(p), [p.stem]) for p in sorted(folder.iterdir())]
    encoder = Clip4ClipEncoder.from_pretrained(tiny_clip4clip, device="cpu")
    report = build_segment_index(items, out, encoder, SegmentSpec(2, 2), progress=False)
    index = VideoIndex.load(out)
    by_video: dict[str, list[tuple[float, float]]] = {}
    for r in index.metadata:
        by_video.setdefault(r["video_id"], []).append((r["start"], r["end"]))
    assert by_video["short"] == [(0.0, 1.5)]
    kept = by_video["broken"]
    assert (0.0, 2.0) in kept and (10.0, 12.0) in kept and len(kept) < 6
    assert [s.path for s in report.skipped_windows] == [str(folder / "broken.mp4")]
    assert report.skipped_windows[0].spans == [w for w in SegmentSpec(2, 2).bounds(12.0) if w not in kept]
    assert [p for p, _ in report.skipped] == [str(folder / "nothing.mp4")]


# ---------------------------------------------------------------------------- the CLI


def test_cli_builds_searches_and_describes_long_videos(long_index, tiny_clip4clip, tmp_path, capsys):
    videos = read_parts(long_index.parent / "long")
    part = videos[1].parts[1]
    assert main(["search", part.caption, "--index", str(long_index), "--json", "--k", "2", "--exact"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and len({h["id"] for h in hits}) == 2  # one moment per video by default
    assert all(h["end"] > h["start"] >= 0 and h["window"].startswith(h["id"] + "@") for h in hits)
    assert main(["search", part.caption, "--index", str(long_index), "--json", "--k", "6", "--per-video", "3"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert max(sum(h["id"] == v for h in hits) for v in {h["id"] for h in hits}) > 1
    assert main(["search", "--like", hits[0]["window"], "--index", str(long_index), "--json", "--exact"]) == 0
    like = json.loads(capsys.readouterr().out)
    source = next(r for r in VideoIndex.load(long_index).metadata if r["id"] == hits[0]["window"])
    assert like and all(h["id"] != source["video_id"] or temporal_iou((h["start"], h["end"]),
                                                                      (source["start"], source["end"])) == 0
                        for h in like)  # the result itself (its stretch) is left out
    assert main(["search", "--like", videos[0].id, "--index", str(long_index)]) == 2
    assert "is a whole long video; give one of its moments" in capsys.readouterr().err
    from PIL import Image

    from demo.evaluate.longvideos import part_frame

    Image.fromarray(part_frame(part)).save(tmp_path / "frame.png")
    assert main(["search", "--image", str(tmp_path / "frame.png"), "--index", str(long_index), "--k", "1"]) == 0
    assert " 0:0" in capsys.readouterr().out
    assert main(["describe", str(long_index.parent / "long" / f"{videos[0].id}.mp4"), "--index", str(long_index),
                 "--timeline", "--json"]) == 0
    timeline = json.loads(capsys.readouterr().out)
    assert timeline[0]["start"] == 0 and timeline[-1]["end"] == pytest.approx(videos[0].duration, abs=1e-3)
    assert all(e["caption"] for e in timeline)


@pytest.mark.parametrize(("argv", "words"), [
    (["--segment", "0"], "--segment must be a positive number"),
    (["--segment", "-3", "--stride", "1"], "--segment must be a positive number"),
    (["--segment", "4", "--stride", "6"], "--stride 6 s is longer than --segment 4 s"),
    (["--stride", "2"], "--stride needs --segment"),
])
def test_cli_refuses_bad_segmenting_in_one_line(argv, words, clip_folder, tmp_path, capsys):
    assert main(["index", "build", str(clip_folder), "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and err.count("\n") == 0


def test_cli_index_build_reports_skipped_windows(tmp_path, tiny_clip4clip, long_clip, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    damage_second(long_clip, (5, 7)).rename(folder / "broken.mp4")
    argv = ["index", "build", str(folder), "--out", str(tmp_path / "index"), "--model", str(tiny_clip4clip),
            "--segment", "2", "--stride", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "as 4 windows (--segment 2 --stride 2)" in out
    assert "broken.mp4: skipped 2 window(s) (0:04–0:06, 0:06–0:08)" in out and "the rest is indexed" in out
    rows = list(read_index_folder(tmp_path / "index").metadata)
    assert {r["video_id"] for r in rows} == {"broken"}


def test_more_like_this_on_a_whole_clip_index_leaves_the_clip_out(tmp_path, tiny_clip4clip, clip_folder, capsys):
    out = tmp_path / "index"
    assert main(["index", "build", str(clip_folder), "--out", str(out), "--model", str(tiny_clip4clip)]) == 0
    capsys.readouterr()
    assert main(["search", "--like", "red_left", "--index", str(out), "--json", "--exact", "--k", "3"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [h["rank"] for h in hits] == [1, 2, 3] and "red_left" not in {h["id"] for h in hits}
    assert "start" not in hits[0]
    assert main(["search", "a red square", "--image", "x.png", "--index", str(out)]) == 2
    assert "give one query" in capsys.readouterr().err
    with pytest.raises(InputError, match="without --segment"):
        MomentSearch(VideoIndex.load(out))
