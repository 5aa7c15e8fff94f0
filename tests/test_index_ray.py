"""The Ray engine (``index build --engine ray``) on a local Ray with 2 CPUs: the same index as the
local engine from the same inputs (files and URLs served on 127.0.0.1), failures listed, and a
killed build (driver or worker) that resumes. Skipped where Ray is not installed
(requirements-scale.txt; CI installs it)."""

from __future__ import annotations

import csv
import functools
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from demo.index.build import build_index
from demo.index.engines.ray_engine import LOOPBACK_ENV, SHARD_PAUSE_ENV, RayOptions, build_index_ray
from demo.index.engines.workers import FAIL_ONCE_ENV
from demo.index.items import VideoItem, items_from_csv
from demo.index.video_index import VideoIndex
from demo.models.encoders import Clip4ClipEncoder
from demo.presets import EMBEDDED, resolve_preset
from demo.world import WorldConfig, clip_spec_by_id, render_to

os.environ.setdefault(LOOPBACK_ENV, "0")  # before Ray is imported: the test cluster listens on 127.0.0.1
ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
N_CLIPS = 6


@pytest.fixture(scope="module")
def local_ray() -> Iterator[str]:
    """A local Ray with 2 CPUs for the module; yields its address (for drivers in subprocesses)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        address = ray.get_runtime_context().gcs_address
        assert address.startswith("127.0.0.1:"), address
        yield address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with N_CLIPS rendered world clips, a file that is not a video, and a CSV listing them."""
    folder = tmp_path_factory.mktemp("ray-clips")
    rows = []
    for i in range(N_CLIPS):
        spec = clip_spec_by_id(WorldConfig(), f"test-{i:06d}")
        render_to(spec, folder / f"{spec.id}.mp4")
        rows.append([{"path": f"{spec.id}.mp4", "caption": c, "id": spec.id} for c in spec.captions[:2]])
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    with open(folder / "clips.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["path", "caption", "id"])
        writer.writeheader()
        for group in rows:
            writer.writerows(group)
        writer.writerow({"path": "broken.mp4", "caption": "a broken file", "id": "broken"})
    return folder


@pytest.fixture(scope="module")
def served(clips: Path) -> Iterator[str]:
    """The clips folder over HTTP on 127.0.0.1 (a free port); yields the base URL."""
    handler = functools.partial(Quiet, directory=str(clips))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


def assert_same_index(a: VideoIndex, b: VideoIndex) -> None:
    assert a.ids == b.ids
    assert [r["captions"] for r in a.metadata] == [r["captions"] for r in b.metadata]
    for name in ("embeddings", "caption_embeddings"):
        x, y = (np.asarray(getattr(i, name), dtype=np.float32) for i in (a, b))
        assert x.shape == y.shape and np.abs(x - y).max() <= 1e-5, name
    assert np.array_equal(a.codes, b.codes) and np.array_equal(a.caption_video, b.caption_video)
    assert a.first_stage == b.first_stage and a.manifest()["first_stage"]["kind"] == "binary-flat"


def test_ray_engine_builds_the_local_engines_index_from_files_and_urls(local_ray: str, clips: Path, served: str,
                                                                      tmp_path: Path) -> None:
    files = items_from_csv(clips / "clips.csv")  # N_CLIPS clips and a file that is not a video
    urls = [VideoItem(f"url-{it.id}", f"{served}/{Path(it.path).name}", it.captions) for it in files[:2]]
    missing = VideoItem("gone", f"{served}/gone.mp4", ["a clip the server does not have"])
    items = [*files, *urls, missing]
    encoder = Clip4ClipEncoder.from_pretrained(EMBEDDED.model, device="cpu")
    local = build_index(items, tmp_path / "local", encoder, batch_size=2, progress=False)
    remote = build_index_ray(items, tmp_path / "ray", resolve_preset(model=str(EMBEDDED.model)),
                             RayOptions(workers=1, batch_size=2), progress=False)
    assert remote.indexed == local.indexed == N_CLIPS + 2 and remote.skipped == local.skipped
    assert [p for p, _ in remote.skipped] == [str(clips / "broken.mp4"), missing.path]
    assert "HTTP 404" in remote.skipped[1][1] and "/tmp/" not in remote.skipped[1][1]
    assert not (tmp_path / "ray.partial").exists()
    a, b = VideoIndex.load(tmp_path / "local"), VideoIndex.load(tmp_path / "ray")
    assert a.metadata[-1]["path"].startswith("http://127.0.0.1:")
    assert_same_index(a, b)


def _driver(address: str, source: Path, out: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "demo", "index", "build", str(source), "--out", str(out), "--engine", "ray",
           "--address", address, "--workers", "1", "--batch-size", "1", "--model", str(EMBEDDED.model)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_killed_driver_and_killed_worker_resume_to_the_same_index(local_ray: str, clips: Path, tmp_path: Path
                                                                   ) -> None:
    out, work = tmp_path / "index", tmp_path / "index.partial"
    env = {**os.environ, FAIL_ONCE_ENV: str(tmp_path / "worker-killed")}
    # the first driver waits 3 s after each shard it writes, so the kill below lands between two shards
    first = _driver(local_ray, clips / "clips.csv", out, {**env, SHARD_PAUSE_ENV: "3"})
    deadline = time.monotonic() + 900  # Ray's workers start slowly on a busy 2-core machine
    while not list(work.glob("shard-*.json")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)  # the driver dies with shards finished and batches in flight
    log = first.communicate(timeout=30)[0].decode()
    assert list(work.glob("shard-*.json")), f"no shard in time; the driver said: {log[-2000:]}"
    assert (tmp_path / "worker-killed").exists(), "the encoder worker was killed once before the driver"
    done = len(list(work.glob("shard-*.json")))
    assert 0 < done < N_CLIPS and not out.exists()

    second = _driver(local_ray, clips / "clips.csv", out, env)
    said = second.communicate(timeout=900)[0].decode()
    assert second.returncode == 0, said[-2000:]
    assert f"({done} already done before this run)" in said
    encoder = Clip4ClipEncoder.from_pretrained(EMBEDDED.model, device="cpu")
    build_index(items_from_csv(clips / "clips.csv"), tmp_path / "fresh", encoder, batch_size=1, progress=False)
    assert_same_index(VideoIndex.load(out), VideoIndex.load(tmp_path / "fresh"))


def test_the_ray_engine_samples_as_the_preset_and_needs_no_batch_size(local_ray: str, clips: Path,
                                                                     tmp_path: Path) -> None:
    """`--preset webvid` samples every 1-fps frame on both engines; `--engine ray` without --batch-size
    takes the engine's default (it used to fail with a TypeError)."""
    common = ["--preset", "webvid", "--model", str(EMBEDDED.model)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "demo", "index", "build", str(clips / "clips.csv"), "--out", str(tmp_path / "ray"),
           "--engine", "ray", "--address", local_ray, "--workers", "1", *common]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    from demo.cli import main

    assert main(["index", "build", str(clips / "clips.csv"), "--out", str(tmp_path / "local"), *common]) == 0
    a, b = VideoIndex.load(tmp_path / "local"), VideoIndex.load(tmp_path / "ray")
    assert a.manifest()["sampling"] == b.manifest()["sampling"] == "every-second"
    assert_same_index(a, b)
