"""App start-up: seconds from ``python app.py`` to a usable page, the first search after it,
and its memory.

Starts the app as a user would (embedded preset unless ``DEMO_PRESET`` says otherwise) on a
free local port with an empty clip cache, polls ``/`` and Gradio's ``/config`` until both answer
200, then times the first search through the API (what a person's first query costs: nothing
warmed by an earlier request) and the download of its ten result clips (rendered on demand
while the background render has not reached them), reads the resident memory of the app's
process tree, and stops it.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_URL = re.compile(r"https?://(?:127\.0\.0\.1|localhost|0\.0\.0\.0):(\d+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError):
        return None


def _tree_rss_mb(pid: int) -> float:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20
    except psutil.Error:
        return float("nan")


@dataclass
class RunningApp:
    """``python app.py`` started by :func:`running_app`: its process, what it printed so far, the port asked for."""

    proc: subprocess.Popen[str]
    output: list[str]
    port: int

    def base(self) -> str:
        """The app's address: the URL it printed (it may pick its own port), else the port asked for."""
        found = [int(m) for line in self.output for m in _URL.findall(line)]
        return f"http://127.0.0.1:{found[-1] if found else self.port}"

    def serves_page(self) -> bool:
        """Whether ``/`` and Gradio's ``/config`` both answer 200."""
        return _status(self.base() + "/") == 200 and _status(self.base() + "/config") == 200


@contextmanager
def running_app(root: Path, args: tuple[str, ...] | list[str], stop_timeout: float = 10.0) -> Iterator[RunningApp]:
    """``root/app.py ARGS`` on a free local port (no analytics, hub offline), its output collected; stopped
    (terminated, killed after ``stop_timeout`` s) when the block ends."""
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(root / "app.py"), "--host", "127.0.0.1", "--port", str(port), *args]
    proc = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(proc.stdout or []), daemon=True).start()
    try:
        yield RunningApp(proc, output, port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bench_app(root: Path, args: tuple[str, ...] = (), timeout_s: float = 240.0) -> dict[str, Any]:
    """Start ``root/app.py`` (with ``args``) and time it to a usable page; ``skipped`` when
    there is no app or it does not come up."""
    app = root / "app.py"
    if not app.is_file():
        return {"skipped": f"{app} does not exist yet"}
    start = time.perf_counter()
    times: dict[str, float] = {}
    with running_app(root, args) as app_run:
        proc, output = app_run.proc, app_run.output
        while time.perf_counter() - start < timeout_s and len(times) < 2:
            if proc.poll() is not None:
                tail = "".join(output[-5:]).strip()
                return {"skipped": f"app.py exited with code {proc.returncode} before serving: {tail[-300:]}"}
            base = app_run.base()
            for name, path in (("page", "/"), ("config", "/config")):
                if name not in times and _status(base + path) == 200:
                    times[name] = time.perf_counter() - start
            time.sleep(0.1)
        if len(times) < 2:
            return {"skipped": f"no HTTP 200 on / and /config within {timeout_s:g} s"}
        first = first_search(base)
        time.sleep(1.0)  # let start-up work that runs after the first answer settle
        return {"page_s": times["page"], "config_s": times["config"], **first, "rss_mb": _tree_rss_mb(proc.pid),
                "preset": os.environ.get("DEMO_PRESET", "embedded") + (" + --index" if "--index" in args else ""),
                "command": "python app.py " + " ".join(args)}


def first_search(base: str, query: str = "a red circle moving left", k: int = 10) -> dict[str, float]:
    """Seconds for the first search through the API, and for fetching all its result clips."""
    from gradio_client import Client

    client = Client(base + "/", verbose=False)  # reads the API schema: not part of the search
    start = time.perf_counter()
    _, hits, _ = client.predict(query, k, "binary + rerank", api_name="/search_text")
    searched = time.perf_counter() - start
    for hit in hits:
        if hit.get("video") and "://" not in hit["video"]:
            with urllib.request.urlopen(f"{base}/{hit['video']}", timeout=60) as response:
                response.read()
    return {"first_search_s": searched, "first_clips_s": time.perf_counter() - start}


def format_app_markdown(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return f"Skipped: {result['skipped']}.\n"
    r = result
    return ("| command | preset | start -> HTTP 200 on / | -> /config answers | first search after that | "
            "with its 10 clips | resident memory MiB |\n"
            "|---|---|---:|---:|---:|---:|---:|\n"
            f"| `{r['command'].strip()}` | {r['preset']} | {r['page_s']:.1f} s | {r['config_s']:.1f} s "
            f"| {r['first_search_s']:.2f} s | {r['first_clips_s']:.2f} s | {r['rss_mb']:.0f} |\n")
