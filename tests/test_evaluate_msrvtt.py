"""``evaluate --suite msrvtt`` on a tiny stand-in of MSR-VTT's 1k-A layout: video7xxx.mp4 files and a
CSV with key,vid_key,video_id,sentence; the table against brute-force ranks of the same embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from demo.cli import main
from tests.conftest import moving_square_clip

COLOURS = {"red": (255, 40, 40), "green": (40, 220, 40), "blue": (40, 40, 255), "yellow": (240, 230, 40),
           "white": (250, 250, 250)}


@pytest.fixture(scope="module")
def msrvtt_standin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("msrvtt")
    videos = root / "TestVideo"
    videos.mkdir()
    lines = ["key,vid_key,video_id,sentence"]
    for i, (name, colour) in enumerate(COLOURS.items()):
        vid = f"video{7010 + i}"
        moving_square_clip(videos / f"{vid}.mp4", direction=1 if i % 2 else -1, colour=colour)
        lines.append(f"ret{i},msr{7010 + i},{vid},a {name} square slides {'right' if i % 2 else 'left'}")
    lines.append("ret9,msr7999,video7999,a clip whose file is missing")
    (root / "MSRVTT_JSFUSION_test.csv").write_text("\n".join(lines) + "\n")
    return videos, root / "MSRVTT_JSFUSION_test.csv"


def brute_force_ranks(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Rank of candidate i for query i: 1 + how many other candidates score at least as high."""
    sim = queries @ candidates.T
    own = np.diag(sim)
    return 1 + np.array([np.sum(np.delete(sim[i], i) >= own[i]) for i in range(len(sim))])


def test_msrvtt_suite_reports_both_directions_of_the_square_table(tmp_path: Path, msrvtt_standin: tuple[Path, Path],
                                                                  tiny_clip4clip: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    from demo.metrics import retrieval_metrics
    from demo.models.encoders import Clip4ClipEncoder

    videos, captions = msrvtt_standin
    argv = ["evaluate", "--suite", "msrvtt", "--videos", str(videos), "--captions", str(captions), "--no-hub",
            "--models", f"{tiny_clip4clip}:seqTransf", "--no-cache", "--out", str(tmp_path / "out"), "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["suite"] == "msrvtt" and "not comparable" in result["info"]["test_set"]
    assert result["info"]["skipped"]["first"][0][0] == "video7999"
    rows = {r["task"]: r for r in result["rows"]}
    assert sorted(rows) == ["t2v", "v2t"] and rows["t2v"]["queries"] == len(COLOURS)
    enc = Clip4ClipEncoder.from_pretrained(tiny_clip4clip, pooling="seqTransf", device="cpu")
    lines = captions.read_text().splitlines()[1:len(COLOURS) + 1]
    text = enc.encode_texts([line.split(",")[3] for line in lines])
    video = enc.encode_videos([videos / f"{line.split(',')[2]}.mp4" for line in lines])
    for task, (q, c) in {"t2v": (text, video), "v2t": (video, text)}.items():
        ranks = brute_force_ranks(q, c)
        for key, value in retrieval_metrics(q @ c.T).items():
            assert rows[task]["metrics"][key] == pytest.approx(value, abs=1e-6), (task, key)
        assert rows[task]["metrics"]["MnR"] == pytest.approx(ranks.mean(), abs=1e-6)
    assert (tmp_path / "out").is_dir()


def test_msrvtt_suite_says_what_is_missing(tmp_path: Path, msrvtt_standin: tuple[Path, Path], tiny_clip4clip: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    videos, captions = msrvtt_standin
    assert main(["evaluate", "--suite", "msrvtt", "--videos", str(videos), "--no-hub",
                 "--models", str(tiny_clip4clip)]) == 2
    assert "--captions CSV" in capsys.readouterr().err
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("video,caption\nvideo7010,a red square\n")
    assert main(["evaluate", "--suite", "msrvtt", "--videos", str(videos), "--captions", str(wrong), "--no-hub",
                 "--models", str(tiny_clip4clip)]) == 2
    assert "video_id" in capsys.readouterr().err
