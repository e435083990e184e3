"""Stopping a run's writes, and the run's scratch folders.

Every write or delete under an output root passes `write_gate`: once a signal has stopped
the run (`stop_writes`), no write that has not started ever starts, so the launcher can
release the output lock knowing nothing more will be written. The run's temporary folders
are tracked so that a stopped run removes them too (`remove_scratch`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator

_gate = threading.Condition()
_in_flight = 0
_stopped_by: int | None = None  # the thread that stopped writes (it alone may go on)
_scratch: set[str] = set()


@contextlib.contextmanager
def write_gate() -> Iterator[None]:
    """Every write or delete under an output root passes here: once `stop_writes` has been
    called, a write that has not started never starts (its thread waits for the process to
    exit), so the run's lock can be released knowing nothing more will be written."""
    global _in_flight
    with _gate:
        while _stopped_by is not None and _stopped_by != threading.get_ident():
            _gate.wait()
        _in_flight += 1
    try:
        yield
    finally:
        with _gate:
            _in_flight -= 1
            _gate.notify_all()


def stop_writes(timeout_s: float) -> bool:
    """Let no write start from now on (but the caller's), and wait up to `timeout_s` for
    those in flight; True when none is left. For a process about to exit."""
    global _stopped_by
    with _gate:
        _stopped_by = threading.get_ident()
        return _gate.wait_for(lambda: _in_flight == 0, timeout_s)


class ScratchDir(tempfile.TemporaryDirectory):
    """A temporary folder of this run (`beam_seg_seg_…` under /tmp), removed when done
    with, or by `remove_scratch` when the run is stopped before that."""

    def __init__(self, prefix: str):
        with _gate:  # made and registered at once, and never after a stop (like a write)
            while _stopped_by is not None and _stopped_by != threading.get_ident():
                _gate.wait()
            super().__init__(prefix=prefix)
            _scratch.add(self.name)

    def cleanup(self) -> None:
        _scratch.discard(self.name)
        super().cleanup()


def track_scratch(path: str) -> None:
    """A temporary folder someone else made for this run (Beam's) and removes when done:
    removed by `remove_scratch` too if the run is stopped first."""
    _scratch.add(path)


def remove_scratch() -> None:
    """Remove every ScratchDir this process still has (a run that is being stopped)."""
    with _gate:
        names = list(_scratch)
        _scratch.clear()
    for name in names:
        _remove_tree(name)


def _remove_tree(path: str) -> None:
    """Remove a folder that other threads may still be writing into: it is renamed first, so
    a writer that creates a file by its old path fails instead of making rmtree's last rmdir
    fail on a file that appeared behind it (which left the folder behind)."""
    aside = f"{path}.removed"
    try:
        os.rename(path, aside)
    except OSError:
        aside = path
    for _ in range(3):
        shutil.rmtree(aside, ignore_errors=True)
        if not os.path.lexists(aside):
            return
        time.sleep(0.05)


