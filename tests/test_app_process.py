"""``python app.py`` as a process: what it logs at start, how it stops, what it leaves behind.

The app runs as systemd or ``docker stop`` would run it: a subprocess that gets SIGTERM. Its
index holds world clips missing from its cache, so a renderer process is at work when it stops.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import build_world_index, tiny_xclip

from demo.app.uploads import UploadSweeper
from demo.index.video_index import VideoIndex

ROOT = Path(__file__).resolve().parents[1]
WORLD_ROWS = 300  # clips to render: the renderer is still busy when the app is stopped


def _many_world_rows(root: Path, model: Path) -> Path:
    """The 8-clip world index of conftest, its rows repeated under the ids of the first
    ``WORLD_ROWS`` test clips (the vectors do not matter here, the clips to render do)."""
    small = VideoIndex.load(build_world_index(root, model))
    times = WORLD_ROWS // len(small)
    rows = [{**r, "id": f"test-{i:06d}", "path": f"clips/test/test-{i:06d}.mp4"}
            for i, r in enumerate(list(small.metadata) * times)]
    captions = np.tile(np.asarray(small.caption_embeddings, np.float32), (times, 1))
    owners = np.concatenate([np.asarray(small.caption_video) + k * len(small) for k in range(times)])
    index = VideoIndex.from_arrays(small.fingerprint, np.tile(np.asarray(small.embeddings, np.float32), (times, 1)),
                                   rows, captions, owners)
    index.info.update(small.info)
    out = root / "index-many"
    index.save(out)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AppProcess:
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def app_process(tmp_path_factory: pytest.TempPathFactory, tiny_clip4clip: Path) -> Iterator[AppProcess]:
    root = tmp_path_factory.mktemp("app-process")
    index = _many_world_rows(root, tiny_clip4clip)
    log = root / "app.log"
    env = {**os.environ, "GRADIO_TEMP_DIR": str(root / "uploads"), "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, str(ROOT / "app.py"), "--model", str(tiny_clip4clip), "--index", str(index),
            "--xclip", str(tiny_xclip(root / "xclip")), "--cache", str(root / "cache"), "--device", "cpu",
            "--port", str(_free_port())]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    running = AppProcess(process, log)
    deadline = time.monotonic() + 240
    while "ready in" not in running.text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"app.py did not start:\n{running.text()[-3000:]}")
        time.sleep(0.2)
    yield running
    if process.poll() is None:
        for child in psutil.Process(process.pid).children(recursive=True):
            child.kill()
        process.kill()
        process.wait()


def test_start_up_log_names_no_cpu_probes_and_no_launch_argument(app_process: AppProcess) -> None:
    text = app_process.text()
    assert "ready in" in text
    assert "Could not load library" not in text and "AVX" not in text  # faiss's loader probing CPU features
    assert "share=True" not in text and "launch()" not in text  # Gradio's advice; the flag is --share
    assert "--share" in text


def test_sigterm_stops_the_renderer_too(app_process: AppProcess) -> None:
    """SIGTERM (systemd, docker stop) shuts down as Ctrl-C does: no renderer or resource tracker
    is left running."""
    parent = psutil.Process(app_process.process.pid)
    deadline = time.monotonic() + 60
    children: list[psutil.Process] = []
    while not children:  # the background renderer starts right after "ready"
        children = parent.children(recursive=True)
        if time.monotonic() > deadline:
            pytest.fail("no renderer process started")
        time.sleep(0.02)
    time.sleep(0.5)
    children = parent.children(recursive=True)  # the renderer and multiprocessing's resource tracker
    app_process.process.send_signal(signal.SIGTERM)
    app_process.process.wait(timeout=60)
    _, alive = psutil.wait_procs(children, timeout=5)
    left = [f"{p.pid} {' '.join(p.cmdline())[:120]}" for p in alive]
    for p in alive:
        p.kill()
    assert left == []


def test_uploads_of_a_stopped_server_are_swept(tmp_path: Path) -> None:
    """Files that arrived before this server started go once past their lifetime; files that
    arrive after its start are Gradio's to delete, whatever their age."""
    old = tmp_path / "3f2a" / "clip.mp4"
    old.parent.mkdir()
    old.write_bytes(b"an upload of a killed server")
    arrived = old.stat().st_ctime
    sweeper = UploadSweeper(tmp_path, lifetime=3600, started=arrived + 5)
    assert sweeper.sweep(now=arrived + 1800) == 0 and old.exists()  # younger than an hour: kept
    assert sweeper.sweep(now=arrived + 3700) == 1
    assert not old.exists() and not old.parent.exists()
    ours = tmp_path / "9c1e" / "example.mp4"
    ours.parent.mkdir()
    ours.write_bytes(b"this server's")
    assert UploadSweeper(tmp_path, lifetime=3600, started=arrived - 10).sweep(now=arrived + 90000) == 0
    assert ours.exists()


_PLOT_PROBE = """
import sys
from gradio.utils import MatplotlibBackendMananger
if sys.argv[1] == "settled":
    from demo.app.ui import choose_plot_backend
    choose_plot_backend()
with MatplotlibBackendMananger():  # what Gradio wraps every event in
    pass
print("pyplot" if "matplotlib.pyplot" in sys.modules else "no pyplot")
"""


@pytest.mark.parametrize(("mode", "expected"), [("settled", "no pyplot"), ("as Gradio leaves it", "pyplot")])
def test_the_first_event_does_not_import_pyplot(mode: str, expected: str) -> None:
    """Gradio reads matplotlib's backend around every event; left on "auto", the first read imports
    pyplot (~0.4 s of the first search). The app settles it before serving."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    out = subprocess.run([sys.executable, "-c", _PLOT_PROBE, mode], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.strip() == expected
