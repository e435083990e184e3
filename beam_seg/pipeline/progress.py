"""Worker side of live progress: frames planned and frames written, told to the launcher.

Beam's metrics reach a DirectRunner launcher only when the pipeline ends, so on a local
runner each reporting step keeps its own small counter file in a directory the launcher
watches (`beam_seg.job.progress`); threads and worker processes of one machine all see
it. Remote runners have no such directory (`progress_dir` is None) and show progress in
their own UI.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

FLUSH_EVERY_S = 0.5


class ProgressCounter:
    """Counts `planned` and `written` frames; rewrites its file at most every half second."""

    def __init__(self, progress_dir: str | None):
        self._path = (os.path.join(progress_dir, f"{os.getpid()}-{uuid.uuid4().hex}.count")
                      if progress_dir else None)
        self._counts = {"planned": 0, "written": 0}
        self._lock = threading.Lock()
        self._flushed = 0.0

    def add(self, name: str, count: int = 1) -> None:
        if self._path is None:
            return
        with self._lock:
            self._counts[name] += count
            if time.monotonic() - self._flushed >= FLUSH_EVERY_S:
                self._write()

    def flush(self) -> None:
        if self._path is not None:
            with self._lock:
                self._write()

    def _write(self) -> None:
        tmp = self._path + ".tmp"
        try:
            with open(tmp, "w") as f:
                f.write(f"{self._counts['planned']} {self._counts['written']}\n")
            os.replace(tmp, self._path)
        except OSError:  # the launcher's temp directory is gone: progress is a courtesy
            self._path = None
        self._flushed = time.monotonic()


def read_totals(progress_dir: str) -> tuple[int, int]:
    """Sum of (planned, written) over every counter file in the directory."""
    planned = written = 0
    try:
        names = os.listdir(progress_dir)
    except OSError:
        return 0, 0
    for name in names:
        if not name.endswith(".count"):
            continue
        try:
            with open(os.path.join(progress_dir, name)) as f:
                p, w = f.read().split()
        except (OSError, ValueError):  # being replaced right now: next poll reads it
            continue
        planned += int(p)
        written += int(w)
    return planned, written
