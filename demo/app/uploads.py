"""Uploads left behind by a server that stopped: deleted once they are past their lifetime.

Gradio deletes the uploads of the running server an hour after they arrive (``delete_cache``),
and all of them when it closes cleanly; a server that was killed (``kill -9``, a crash, a power
cut) leaves its uploads in the upload folder for good. At start, and then as often as Gradio
checks its own, :class:`UploadSweeper` deletes the files of that folder that arrived before this
server started and are past the lifetime. Files this server receives or caches (example clips)
arrive after its start, so they stay Gradio's to delete. A file's arrival is its ``ctime``, as
Gradio reckons it: a copy keeps its source's modification time, not its ctime.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)


def upload_folder() -> Path:
    """Where Gradio stores uploads: ``$GRADIO_TEMP_DIR``, else ``<temp>/gradio``."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder())


class UploadSweeper:
    """Deletes files in ``folder`` that arrived before ``started`` (default: now) and are older than
    ``lifetime`` seconds, with the folders they leave empty."""

    def __init__(self, folder: Path, lifetime: float, started: float | None = None) -> None:
        self.folder = folder
        self.lifetime = lifetime
        self.started = time.time() if started is None else started
        self._stop = threading.Event()

    def sweep(self, now: float | None = None) -> int:
        """Delete what is due; returns how many files went."""
        if not self.folder.is_dir():
            return 0
        now = time.time() if now is None else now
        deleted = 0
        for path in sorted(self.folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            try:
                if path.is_symlink() or path.is_file():
                    ctime = path.lstat().st_ctime
                    if ctime < self.started and now - ctime > self.lifetime:
                        path.unlink()
                        deleted += 1
                elif path.is_dir() and not any(path.iterdir()) and path.stat().st_ctime < self.started:
                    path.rmdir()
            except OSError:  # another process deleted or is writing it: the next sweep looks again
                continue
        if deleted:
            log.info("deleted %d upload(s) left by an earlier server in %s", deleted, self.folder)
        return deleted

    def run_every(self, seconds: float) -> threading.Thread:
        """Sweep every ``seconds`` in a daemon thread until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.wait(seconds):
                self.sweep()

        thread = threading.Thread(target=loop, name="upload-sweeper", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()


def sweep_on_start(lifetime: float, every: float) -> UploadSweeper:
    """Sweep the upload folder now (before serving), then every ``every`` seconds."""
    sweeper = UploadSweeper(upload_folder(), lifetime)
    sweeper.sweep()
    sweeper.run_every(every)
    return sweeper
