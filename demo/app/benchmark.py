"""The Benchmark tab's data: the stored evaluation of the loaded model, and reruns of it.

A rerun goes through the same workflow as ``python -m demo evaluate``
(:mod:`demo.evaluate.workflow`), in a child process: the test clips' frames, a second copy of
the model and the scores live there, and their memory goes back to the system when it exits
(in the server process a rerun left about 340 MB behind). One rerun at a time; the tab's button
queues the next behind it. Who may start one is the operator's call (``AppConfig.allow_rerun``).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo.errors import InputError
from demo.evaluate.results import PUBLISHED_WEBVID10K
from demo.evaluate.workflow import EvaluateRequest, run_evaluation
from demo.files import atomic_write_json

log = logging.getLogger(__name__)
ProgressFn = Callable[[float, str], None]  # (fraction done, message)


@dataclass(frozen=True)
class BenchmarkView:
    """The retrieval table of the active model (empty rows: not evaluated yet)."""

    rows: list[dict[str, Any]]  # {"name", "task", "metrics": {R@1..MnR}, "recall_curve", ...}
    info: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # the eval.json it was read from
    markdown: str = ""  # every table of that run, as Markdown
    published: dict[str, dict[str, float]] = field(default_factory=lambda: dict(PUBLISHED_WEBVID10K))


def read_view(candidates: list[Path]) -> BenchmarkView:
    """The newest readable evaluation among ``candidates`` (an empty view when there is none)."""
    found = [p for p in candidates if p.is_file()]
    if not found:
        return BenchmarkView([], {})
    path = max(found, key=lambda p: p.stat().st_mtime)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return BenchmarkView(list(data.get("rows") or []), dict(data.get("info") or {}), str(path),
                             str(data.get("markdown") or ""))
    except (OSError, ValueError, AttributeError) as err:
        log.warning("cannot read %s: %s", path, err)
        return BenchmarkView([], {"error": f"{path.name} is unreadable: {err}"}, str(path))


def _child(request: EvaluateRequest, out: Path, messages: Any) -> None:
    """The rerun's process: evaluate, write the result, report progress and the outcome."""
    try:
        result = run_evaluation(request, lambda fraction, text: messages.put(("progress", fraction, text)))
        atomic_write_json(out, {**result.to_json(), "markdown": result.to_markdown()})
        messages.put(("done", 1.0, ""))
    except Exception as err:  # noqa: BLE001 - whatever happens there is reported here, in one line
        messages.put(("error", 0.0, f"{type(err).__name__}: {err}"))


class Rerunner:
    """Runs one evaluation at a time in a child process and waits for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def run(self, request: EvaluateRequest, out: Path, progress: ProgressFn | None = None,
            poll_s: float = 0.5) -> None:
        """Evaluate ``request`` in a child process and write its JSON to ``out``; forward its
        progress. Raises InputError when a rerun is already going, or with the child's error."""
        if not self._lock.acquire(blocking=False):
            raise InputError("an evaluation is already running; wait for it to finish")
        try:
            context = multiprocessing.get_context("spawn")  # no forked copy of the server's threads
            messages = context.Queue()
            child = context.Process(target=_child, args=(request, out, messages), name="rerun-benchmark",
                                    daemon=True)
            child.start()
            outcome = self._follow(child, messages, progress, poll_s)
            child.join()
        finally:
            self._lock.release()
        if outcome[0] != "done":
            raise InputError(f"the evaluation failed: {outcome[2] or f'exit code {child.exitcode}'}")

    @staticmethod
    def _follow(child: Any, messages: Any, progress: ProgressFn | None,
                poll_s: float) -> tuple[str, float, str]:
        """Relay progress until the child says it is done or failed (or dies without a word)."""
        while True:
            try:
                kind, fraction, text = messages.get(timeout=poll_s)
            except queue.Empty:
                if not child.is_alive():
                    return ("error", 0.0, "")
                continue
            if kind == "progress":
                if progress is not None:
                    progress(fraction, text)
                continue
            return (kind, fraction, text)
