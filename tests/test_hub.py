"""The webvid preset's hub path, run for real against a local stand-in for the hub (tests/hub_standin.py).

``huggingface_hub`` is pointed at a server on 127.0.0.1 through ``HF_ENDPOINT`` (and a private
``HF_HOME``), which serves, in the hub's layout: a tiny CLIP as ``Searchium-ai/clip4clip-webvid150k``
(with published-style WebVid test features under ``Notebooks/features`` and MSR-VTT decoys), the
Searchium Space ``Searchium-ai/Video-Search`` with the history the real one has (an old commit
with ``..._visual_features_database[_packed].npy``; the pinned commit with precomputed vectors,
packed codes and a ``videoid,contentUrl,name`` CSV, plus the larger "half" set and decoy files; a
head that deleted ``data/`` and ``new_data/`` and whose tree listing fails), a tiny X-CLIP as
``microsoft/xclip-base-patch32``, and the videos the CSV's URLs point at. Nothing reaches any
other host.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from demo.cli import main
from demo.index.discover import choose_feature_pairs, choose_index_files, inspect_repo
from demo.index.hub import HubError, HubRepo, download
from demo.index.video_index import VideoIndex
from demo.presets import WEBVID
from tests.conftest import moving_square_clip, save_tiny_clip4clip, tiny_xclip
from tests.hub_standin import HubStandIn

ROOT = Path(__file__).resolve().parent.parent
MODEL = "Searchium-ai/clip4clip-webvid150k"
SPACE = HubRepo("Searchium-ai/Video-Search", "space")
FEATURES = "Notebooks/features/WEBVID_test10K_{side}_vectors_Cl4Cl_{model}.npy"
N_SMALL, N_LARGE, N_OLD, N_TEST = 40, 60, 36, 300
# The Space's head as it is today: the data folders deleted.
HEAD_FILES = {".gitattributes": b"*.npy filter=lfs\n", "README.md": b"---\n---\n", "Searchium.png": b"\x89PNG\r\n",
              "app.py": b"print('the Space')\n", "requirements.txt": b"gradio\n"}


@dataclass
class WebvidHub:
    hub: HubStandIn
    captions: list[str]  # the small index's captions, row order
    urls: list[str]  # its contentUrls
    features: dict[str, tuple[np.ndarray, np.ndarray]]  # model tag -> (text, video) published-style features
    old: str  # the Space's commit with the older file names (N_OLD rows)
    middle: str  # its commit with both sets (the preset's pinned revision)
    head: str  # main: the data deleted

    def files_at(self, revision: str) -> dict[str, bytes]:
        found = self.hub.repos[("space", SPACE.repo_id)].at(revision)
        assert found is not None
        return found.files


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows([["videoid", "contentUrl", "name", "page_dir"], *rows])
    return out.getvalue().encode()


def _space_index(hub: HubStandIn, encode: Any, n: int, folder: str, stem: str, clips: list[str],
                 seed: int, names: tuple[str, str] = ("_visual_features", "_visual_features_binary_packed")
                 ) -> tuple[dict[str, bytes], list[str], list[str]]:
    """A Searchium-style index: vectors that match their captions (so a caption finds its row), codes, CSV
    (``names``: the endings of the vectors' and codes' file names)."""
    rng = np.random.default_rng(seed)
    captions = [f"a {c} square moving {d}" for c in ("red", "green", "blue") for d in ("left", "right")]
    captions = (captions + [f"stock footage clip number {i} of {stem}" for i in range(n)])[:n]
    ids = [str(1000 * seed + i) for i in range(n)]
    urls = [f"{hub.url}/files/{clips[i % len(clips)]}" for i in range(n)]
    vectors = encode(captions) + rng.normal(0, 0.01, size=(n, 16))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    files = {f"{folder}/{stem}.csv": _csv([[i, u, c, "dir"] for i, u, c in zip(ids, urls, captions, strict=True)]),
             f"{folder}/{stem}{names[0]}.npy": _npy(vectors),
             f"{folder}/{stem}{names[1]}.npy": _npy(np.packbits(vectors > 0, axis=1))}
    return files, captions, urls


def _features() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Published-style test features: per model, text i and video i a (noisy) pair."""
    rng = np.random.default_rng(7)
    out = {}
    for model, noise in (("zeroshot", 1.2), ("msrvtt_train", 1.0), ("webvid150k_train", 0.6)):
        text = rng.normal(size=(N_TEST, 16)).astype(np.float32)
        out[model] = (text, (text + noise * rng.normal(size=text.shape)).astype(np.float32))
    return out


def build_webvid_hub(root: Path) -> WebvidHub:
    from demo.models.encoders import Clip4ClipEncoder

    hub = HubStandIn()
    hub.start()
    model = save_tiny_clip4clip(root / "model", pooling="meanP")
    (model / "clip4clip.json").unlink()  # a plain hub CLIP folder, as the real repo is
    encode = Clip4ClipEncoder.from_pretrained(model, device="cpu").encode_texts
    clips = []
    for colour, rgb in (("red", (255, 40, 40)), ("green", (40, 220, 60)), ("blue", (50, 80, 255))):
        for direction, word in ((-1, "left"), (1, "right")):
            name = f"{colour}_{word}.mp4"
            hub.static[name] = moving_square_clip(root / name, direction, rgb).read_bytes()
            clips.append(name)
    small, captions, urls = _space_index(hub, encode, N_SMALL, "data", "dataset_v1", clips, 1)
    large, _, _ = _space_index(hub, encode, N_LARGE, "new_data", "video_half_dataset", clips, 2)
    decoys = {"data/other_vectors.npy": _npy(np.ones((N_SMALL, 24), np.float32)),
              "data/codes_of_something_else.npy": _npy(np.zeros((N_SMALL + 1, 2), np.uint8)),
              "data/notes.csv": b"a,b\n1,2\n", "data/ids.npy": _npy(np.arange(N_SMALL))}
    old_set, _, _ = _space_index(hub, encode, N_OLD, "data", "dataset_v1", clips, 3,
                                 ("_visual_features_database", "_visual_features_database_packed"))
    old = hub.add_commit("space", SPACE.repo_id, {**HEAD_FILES, **old_set}, "the index")
    middle = hub.add_commit("space", SPACE.repo_id, {**HEAD_FILES, **small, **large, **decoys}, "both sets",
                            sha=WEBVID.index_revision)
    head = hub.add_commit("space", SPACE.repo_id, HEAD_FILES, "Delete data and new_data")
    hub.break_tree("space", SPACE.repo_id, "main", head)  # as listing the real Space's main may fail
    features = _features()
    extra: dict[str, bytes | Path] = {"Notebooks/GSI_VideoRetrieval-Evaluation.ipynb": b"{}"}
    for tag, (text, video) in features.items():
        extra[FEATURES.format(side="textual", model=tag)] = _npy(text)
        extra[FEATURES.format(side="visual", model=tag)] = _npy(video)
    web_text, web_video = features["webvid150k_train"]
    extra[FEATURES.format(side="textual", model="webvid150k_train_binary")] = _npy(np.sign(web_text))
    extra[FEATURES.format(side="visual", model="webvid150k_train_binary")] = _npy(np.sign(web_video))
    for side in ("textual", "visual"):  # another test set's features: not the table's
        extra[f"Notebooks/features/MSRVTT_test_{side}_vectors_Cl4Cl_msrvtt9k.npy"] = _npy(np.ones((50, 16), np.float32))
    hub.add_folder("model", MODEL, model, extra)
    hub.add_folder("model", "microsoft/xclip-base-patch32", tiny_xclip(root / "xclip"))
    return WebvidHub(hub, captions, urls, features, old, middle, head)


@pytest.fixture(scope="module")
def webvid_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebvidHub]:
    built = build_webvid_hub(tmp_path_factory.mktemp("hub"))
    yield built
    built.hub.stop()


@pytest.fixture
def hub_env(webvid_hub: WebvidHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``huggingface_hub`` pointed at the stand-in, online, with an empty private cache."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", webvid_hub.hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    importlib.reload(constants)  # it reads the environment once, at import
    # Chunks of 256 bytes (the hub's are 10 MB), so a cut in a small file leaves whole chunks on disk.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 256)
    webvid_hub.hub.requests.clear()
    yield tmp_path / "hf"
    monkeypatch.undo()
    importlib.reload(constants)


def resolve_gets(hub: HubStandIn, name: str) -> list[str | None]:
    """The Range header of every GET of file ``name`` through /resolve/ (None: the whole file)."""
    return [r for method, path, r in hub.requests if method == "GET" and "/resolve/" in path and path.endswith(name)]


# ------------------------------------------------------------------------ discovery


def test_discovery_finds_the_index_among_decoys_without_downloading(webvid_hub: WebvidHub, hub_env: Path) -> None:
    candidates = inspect_repo(SPACE, webvid_hub.middle)
    kinds = {c.path: c.kind for c in candidates}
    assert kinds["data/notes.csv"] == "other" and kinds["data/ids.npy"] == "other"
    chosen = choose_index_files(candidates, dim=16)
    assert chosen.paths() == ["data/dataset_v1_visual_features.npy",
                              "data/dataset_v1_visual_features_binary_packed.npy", "data/dataset_v1.csv"]
    assert (chosen.embeddings.rows, chosen.embeddings.width) == (N_SMALL, 16)
    # Only headers were read: every GET of a data file asked for its first bytes.
    gets = [(p, r) for m, p, r in webvid_hub.hub.requests if m == "GET" and "/resolve/" in p]
    assert gets and all(r is not None and r.startswith("bytes=0-") for _, r in gets)
    assert not hub_env.joinpath("hub").exists() or not list(hub_env.joinpath("hub").rglob("*.npy"))


def test_index_files_override_and_unknown_files(webvid_hub: WebvidHub, hub_env: Path) -> None:
    only = ["new_data/video_half_dataset_visual_features.npy", "new_data/video_half_dataset.csv"]
    chosen = choose_index_files(inspect_repo(SPACE, webvid_hub.middle, only=only), dim=16)
    assert chosen.embeddings.rows == N_LARGE and chosen.codes is None
    with pytest.raises(HubError, match="no data/missing.npy"):
        inspect_repo(SPACE, webvid_hub.middle, only=["data/missing.npy"])


def test_feature_pairs_are_the_webvid_ones(webvid_hub: WebvidHub, hub_env: Path) -> None:
    pairs = choose_feature_pairs(inspect_repo(HubRepo.parse(MODEL)))
    assert sorted(p.name for p in pairs) == sorted(
        f"webvid_test10k_vectors_cl4cl_{m}" for m in ("zeroshot", "msrvtt_train", "webvid150k_train",
                                                       "webvid150k_train_binary"))
    assert all(p.text.rows == N_TEST for p in pairs)


# ------------------------------------------------------------------ download, cache, resume


def test_download_resumes_after_an_interrupted_run_and_is_cached(webvid_hub: WebvidHub, hub_env: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    name = "data/dataset_v1_visual_features.npy"
    hub = webvid_hub.hub
    expected, revision = webvid_hub.files_at(webvid_hub.middle)[name], webvid_hub.middle
    hub.cut(name, 768)  # the connection drops after 768 bytes (3 chunks) ...
    hub.fail(name)  # ... and the hub's own retry finds the server down: this run gives up
    with pytest.raises(HubError, match="run the same command again"):
        download(SPACE, name, revision)
    partial = list(hub_env.rglob("*.partial"))
    assert len(partial) == 1 and partial[0].stat().st_size == 768
    path = download(SPACE, name, revision)  # the next run asks for the rest only
    assert path.read_bytes() == expected
    assert resolve_gets(hub, name)[-1] == "bytes=768-"
    assert not list(hub_env.rglob("*.partial")) and not list(hub_env.rglob("*.incomplete"))
    before = len(hub.requests)
    assert download(SPACE, name, revision) == path and len(hub.requests) == before  # from the cache, no request
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert download(SPACE, name, revision) == path  # offline too


def test_a_dropped_connection_is_resumed_within_the_same_run(webvid_hub: WebvidHub, hub_env: Path) -> None:
    name = "data/dataset_v1.csv"
    webvid_hub.hub.cut(name, 512)
    path = download(SPACE, name, webvid_hub.middle)
    assert path.read_bytes() == webvid_hub.files_at(webvid_hub.middle)[name]
    assert resolve_gets(webvid_hub.hub, name) == [None, "bytes=512-"]


# -------------------------------------------------------------------- the commands


def test_index_fetch_then_search_by_url(webvid_hub: WebvidHub, hub_env: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "index-webvid"
    assert main(["index", "fetch", "webvid", "--out", str(out)]) == 0
    assert "imported 40 videos" in capsys.readouterr().out
    index = VideoIndex.load(out)
    manifest = index.manifest()
    assert (manifest["model"], manifest["sampling"], manifest["resize"]) == (MODEL, "every-second", "pil-bicubic")
    assert manifest["video_to_text"] == "nearest-videos" and len(index.caption_video) == 0
    # Taken from the commit the preset pins (main deleted the data), and recorded so.
    source = manifest["source"]
    assert (source["repo"], source["revision"], source["set"]) == (str(SPACE), webvid_hub.middle, "v1")
    assert source["files"] == ["data/dataset_v1_visual_features.npy",
                               "data/dataset_v1_visual_features_binary_packed.npy", "data/dataset_v1.csv"]
    assert index.metadata[3]["page_dir"] == "dir"
    assert main(["search", webvid_hub.captions[3], "--index", str(out), "--preset", "webvid", "--k", "3",
                 "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["path_or_url"] == hits[0]["file"] == webvid_hub.urls[3]
    clip = next(iter(webvid_hub.hub.static))
    local = tmp_path / clip
    local.write_bytes(webvid_hub.hub.static[clip])
    assert main(["describe", str(local), "--index", str(out), "--preset", "webvid", "--k", "5", "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert len(described) == 5 and {h["caption"] for h in described} <= set(webvid_hub.captions)
    # A second fetch into the same folder is refused without --overwrite; the files are not fetched again.
    webvid_hub.hub.requests.clear()
    assert main(["index", "fetch", "webvid", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_webvid_features_suite_reproduces_a_brute_force_count(webvid_hub: WebvidHub, hub_env: Path,
                                                                tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--suite", "webvid-features", "--rerank", "100", "--out", str(tmp_path / "r"),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = {(r["name"], r["task"]): r for r in result["rows"]}
    text, video = webvid_hub.features["webvid150k_train"]
    t = text / np.linalg.norm(text, axis=1, keepdims=True)
    v = video / np.linalg.norm(video, axis=1, keepdims=True)
    sim = t @ v.T
    ranks = 1 + (sim > np.diag(sim)[:, None]).sum(1)  # no ties in random floats
    row = rows[("CLIP4Clip (150k WebVid) (published features)", "t2v")]
    assert row["metrics"]["R@1"] == pytest.approx(100 * np.mean(ranks == 1))
    assert row["metrics"]["MnR"] == pytest.approx(ranks.mean())
    assert row["published"] == "CLIP4Clip (150k WebVid)" and "tie" in row["notes"]
    assert rows[("CLIP4Clip (150k WebVid) (published features), binarised + rerank100", "t2v")]["published"] == \
        "binarised + rerank100"
    names = {r["name"] for r in result["rows"]}
    assert {"zero-shot CLIP (published features)", "CLIP4Clip (MSR-VTT) (published features)"} <= names
    binary = [m for m in result["info"]["models"] if "binary" in m["row"]]
    assert binary and binary[0]["agreement_with_our_sign_codes"] == 1.0
    assert "published, WebVid-10k" in (tmp_path / "r" / "results.md").read_text()


# ------------------------------------------------------------- the one command: the app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_one_command_app_fetches_and_serves_the_standins_videos(webvid_hub: WebvidHub, tmp_path: Path) -> None:
    """``DEMO_PRESET=webvid python app.py``: the model, X-CLIP and the index come through the hub client
    from the stand-in; the page's search returns the stand-in's videos by their URLs."""
    import httpx
    from gradio_client import Client

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_HUB_CACHE", "TRANSFORMERS_OFFLINE")}
    env.update(DEMO_PRESET="webvid", HF_ENDPOINT=webvid_hub.hub.url, HF_HOME=str(tmp_path / "hf"),
               DEMO_INDEX_HOME=str(tmp_path / "indexes"), DEMO_CACHE=str(tmp_path / "cache"),
               GRADIO_ANALYTICS_ENABLED="False", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    log = (tmp_path / "app.log").open("w")
    app = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                           stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 300
        client = None
        while client is None:
            if app.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the app did not start:\n" + (tmp_path / "app.log").read_text()[-3000:])
            try:
                client = Client(url, verbose=False)
            except Exception:  # not listening yet
                time.sleep(1)
        html, hits, status = client.predict(webvid_hub.captions[4], 3, "exact", api_name="/search_text")
        assert hits[0]["caption"] == webvid_hub.captions[4] and hits[0]["video"] == webvid_hub.urls[4]
        assert all(h["video"].startswith(webvid_hub.hub.url + "/files/") for h in hits)  # played from their URLs
        assert f'src="{webvid_hub.urls[4]}"' in html
        page = httpx.get(url).text
        assert "captions of the nearest videos" in page  # the page says how video -> text works here
        assert f"WebVid 1.5M from {SPACE} @ {webvid_hub.middle[:7]}" in page  # where the index came from
        assert httpx.get(hits[0]["video"]).content == webvid_hub.hub.static[hits[0]["video"].rsplit("/", 1)[1]]
        assert (tmp_path / "indexes" / "index-webvid" / "manifest.json").is_file()
        served = [p for m, p, _ in webvid_hub.hub.requests if m == "GET" and p.startswith("/spaces/")]
        assert any(p.endswith("dataset_v1_visual_features.npy") for p in served)
    finally:
        app.terminate()
        app.wait(timeout=30)
        log.close()
