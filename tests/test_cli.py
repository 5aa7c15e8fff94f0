"""End to end through the CLI: train a tiny model, build an index (interrupted, resumed),
search and describe, import precomputed embeddings, and every bad input as one clear line."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from demo.cli import main
from demo.index.store import read_index_folder
from demo.models.encoders import Clip4ClipEncoder
from demo.train.loop import TrainConfig, train
from tests.conftest import TINY_TEXT, TINY_VISION


@pytest.fixture(scope="module")
def trained(clip_folder, tmp_path_factory):
    """A tiny CLIP4Clip fitted to the six coloured-square clips (so search has right answers)."""
    work = tmp_path_factory.mktemp("trained")
    spec = work / "tiny.json"
    spec.write_text(json.dumps({"text": TINY_TEXT, "vision": TINY_VISION,
                                "clip4clip": {"sample_fps": 4.0, "max_frames": 6, "head_heads": 2}}))
    csv = str(clip_folder / "captions.csv")
    return train(TrainConfig(train=csv, val=csv, out=str(work / "run"), model_config=str(spec),
                             pooling="meanP", epochs=40, batch_size=6, lr=1e-3, clip_lr=1e-3,
                             warmup=0.05, workers=1), progress=False)


@pytest.fixture(scope="module")
def corpus(clip_folder, tmp_path_factory):
    """The clips plus two files that are not videos."""
    folder = tmp_path_factory.mktemp("corpus")
    for f in clip_folder.iterdir():
        shutil.copy(f, folder / f.name)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    (folder / "empty.mp4").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def built_index(trained, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("idx") / "index"
    argv = ["index", "build", str(corpus), "--out", str(out), "--model", str(trained),
            "--captions", str(corpus / "captions.csv"), "--batch-size", "2"]
    calls = {"n": 0}
    original = Clip4ClipEncoder.encode_frames

    def flaky(self, frames, mask):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # a user pressing Ctrl-C in the middle of the build
        return original(self, frames, mask)

    mp = pytest.MonkeyPatch()
    mp.setattr(Clip4ClipEncoder, "encode_frames", flaky)
    assert main(argv) == 130
    assert not (out / "manifest.json").exists()  # nothing half-written at the target
    assert out.with_name("index.partial").is_dir()
    calls["n"] = 10  # from now on never interrupt, just count
    assert main(argv) == 0
    mp.undo()
    # 6 clips in batches of 2: the first batch was kept, so the resumed run encodes the other 2.
    assert calls["n"] == 12
    assert not out.with_name("index.partial").exists()
    return out


def test_build_reports_skipped_files_and_writes_a_complete_index(built_index, capsys):
    manifest = json.loads((built_index / "manifest.json").read_text())
    assert manifest["count"] == 6 and manifest["pooling"] == "meanP"
    assert manifest["media_root"]
    rows = list(read_index_folder(built_index).metadata)
    assert {r["id"] for r in rows} >= {"red_left", "blue_right"}


def test_search_finds_the_planted_clip(built_index, capsys):
    assert main(["search", "a blue square moving left", "--index", str(built_index), "--json", "--k", "3"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and [h["rank"] for h in hits] == [1, 2, 3]
    assert "blue" in hits[0]["caption"]
    assert {"id", "score", "caption", "path_or_url"} <= set(hits[0])
    assert main(["search", "a red square moving right", "--index", str(built_index), "--exact", "--json"]) == 0
    assert "red" in json.loads(capsys.readouterr().out)[0]["caption"]


def test_describe_ranks_captions(built_index, corpus, capsys):
    assert main(["describe", str(corpus / "green_right.mp4"), "--index", str(built_index), "--json"]) == 0
    captions = json.loads(capsys.readouterr().out)
    assert "green" in captions[0]["caption"]
    assert captions[0]["score"] >= captions[-1]["score"]


def test_very_long_query_is_truncated_not_an_error(built_index, capsys):
    assert main(["search", "red " * 2000, "--index", str(built_index), "--json"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["search", "   "], "query is empty"),
    (["search", "\x00\x00"], "query is empty"),
    (["search", "\u200b\u200b\ufeff"], "query is empty"),
    (["search", "x", "--index", "/nonexistent/index"], "does not exist"),
    (["describe", "/nonexistent/clip.mp4"], "clip.mp4"),
    (["describe", "/tmp"], "is a folder"),
    (["search", "x", "--device", "banana"], "unknown device 'banana'"),
    (["search", "x", "--device", "cuda:7"], "cuda:7"),
])
def test_bad_inputs_end_in_one_line_and_exit_2(argv, message, built_index, capsys):
    if "--index" not in argv:
        argv = [*argv, "--index", str(built_index)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_non_video_upload_to_describe(built_index, corpus, capsys):
    assert main(["describe", str(corpus / "broken.mp4"), "--index", str(built_index)]) == 2
    assert "broken.mp4" in capsys.readouterr().err


def test_a_truncated_clip_is_one_line_without_decoder_noise(built_index, corpus, tmp_path, capfd):
    """The decoders' own C-level logging (ffmpeg inside decord) stays quiet; only our line shows."""
    whole = (corpus / "red_left.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    capfd.readouterr()
    code = main(["describe", str(cut), "--index", str(built_index)])
    err = [line for line in capfd.readouterr().err.splitlines() if not line.startswith("INFO ")]
    assert code in (0, 2) and len(err) <= 1 and not any("@ 0x" in line for line in err), err


def test_classify_a_folder_says_so(capsys):
    assert main(["classify", "/tmp", "--labels", "a, b"]) == 2
    assert "is a folder, not a video file" in capsys.readouterr().err


def test_index_built_with_another_model_is_refused(built_index, tiny_clip4clip_other, capsys):
    assert main(["search", "red", "--index", str(built_index), "--model", str(tiny_clip4clip_other)]) == 2
    err = capsys.readouterr().err
    assert "other-c4c@" in err and "best@" in err  # names both models


def test_index_import_checks_shapes_and_searches(tmp_path, trained, capsys):
    enc = Clip4ClipEncoder.from_pretrained(trained)
    captions = ["a red square moving left", "a green square moving right", "a blue square moving left"]
    emb = enc.encode_texts(captions)  # stand-in "video" embeddings that match their captions
    np.save(tmp_path / "emb.npy", emb)
    np.save(tmp_path / "codes.npy", np.packbits(emb > 0, axis=1))
    (tmp_path / "meta.csv").write_text("videoid,name,contentUrl\n" + "".join(
        f"{i},{c},https://example.invalid/{i}.mp4\n" for i, c in enumerate(captions)))
    out = tmp_path / "imported"
    assert main(["index", "import", "--embeddings", str(tmp_path / "emb.npy"), "--binary",
                 str(tmp_path / "codes.npy"), "--metadata", str(tmp_path / "meta.csv"), "--out", str(out),
                 "--model", str(trained)]) == 0
    capsys.readouterr()
    assert main(["search", "a green square moving right", "--index", str(out), "--json"]) == 0
    hit = json.loads(capsys.readouterr().out)[0]
    assert hit["id"] == "1" and hit["path_or_url"].endswith("1.mp4")
    np.save(tmp_path / "bad_codes.npy", np.zeros((3, 7), np.uint8))
    assert main(["index", "import", "--embeddings", str(tmp_path / "emb.npy"), "--binary",
                 str(tmp_path / "bad_codes.npy"), "--metadata", str(tmp_path / "meta.csv"),
                 "--out", str(tmp_path / "x"), "--model", str(trained)]) == 2
    assert "(3, " in capsys.readouterr().err


def test_search_names_files_that_play(tiny_clip4clip, tmp_path, monkeypatch, capsys):
    """An index of world clips stores world-relative paths; the CLI renders what it names into the
    cache (as the app does) and prints a file that exists, byte for byte the app's."""
    from conftest import build_world_index

    index = build_world_index(tmp_path, tiny_clip4clip, n=4)
    monkeypatch.setenv("DEMO_CACHE", str(tmp_path / "cache"))
    assert main(["search", "a red circle", "--index", str(index), "--k", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3
    for row in rows:
        assert row["path_or_url"] == f"clips/test/{row['id']}.mp4"
        assert row["file"] == str(tmp_path / "cache" / row["path_or_url"])
        assert Path(row["file"]).read_bytes() == (tmp_path / "world" / row["path_or_url"]).read_bytes()
    assert main(["search", "a red circle", "--index", str(index), "--k", "1"]) == 0
    assert str(tmp_path / "cache") in capsys.readouterr().out


def test_pooling_choices_are_the_model_poolings():
    from demo.models.temporal import POOLINGS
    from demo.presets import POOLING_CHOICES

    assert POOLING_CHOICES == POOLINGS


# --- input checked before any model loads --------------------------------------------------


@pytest.fixture()
def no_models(monkeypatch):
    """Loading a model fails the test: these inputs must be refused before."""
    import demo.search.searcher
    from demo.models.xclip import XClipClassifier

    def loaded(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(demo.search.searcher, "open_searcher", loaded)
    monkeypatch.setattr(XClipClassifier, "from_pretrained", loaded)


@pytest.mark.parametrize("argv, message", [
    (["search", "  \u200b "], "query is empty"),
    (["search", "x", "--k", "100000000"], "--k must be between 1 and 1,000, got 100,000,000"),
    (["search", "x", "--k", "0"], "--k must be between 1 and 1,000"),
    (["search", "--image", "/nonexistent/photo.jpg"], "no such image file"),
    (["describe", "/nonexistent/clip.mp4"], "no such file"),
    (["describe", "{tmp}/zero.mp4"], "empty file (0 bytes)"),
    (["describe", "{tmp}/notes.mp4"], "not a readable video (invalid data found when processing input)"),
    (["describe", "{tmp}/notes.mp4", "--k", "5000"], "--k must be between"),
    (["classify", "{tmp}/zero.mp4", "--labels", "a, b"], "empty file (0 bytes)"),
])
def test_bad_input_is_refused_before_the_model_loads(argv, message, tmp_path, no_models, capsys):
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("meeting notes, not a video\n" * 40)
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Errno" not in err


def test_refusals_import_no_model_code(tmp_path):
    """Refused in the time it takes to start Python: neither torch nor transformers is imported."""
    import subprocess
    import sys

    (tmp_path / "zero.mp4").write_bytes(b"")
    code = ("import sys; from demo.cli import main; "
            f"codes = [main(['search', ' ']), main(['describe', {str(tmp_path / 'zero.mp4')!r}]), "
            "main(['search', 'x', '--k', '100000000'])]; "
            "print(codes, sorted({'torch', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[2, 2, 2] []"
