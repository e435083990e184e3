"""Launcher side of live progress: frames written of frames planned, frames/s and an ETA.

A tqdm bar when stderr is a terminal, plain lines every few seconds when it is not (a log
file, CI). It polls the counter files the workers keep (`beam_seg.pipeline.progress`).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from beam_seg import storage
from beam_seg.pipeline.progress import read_totals

POLL_S = 0.5
# Plain lines come every second at first, then less often as the run goes on (a tenth of
# the time since the first frame, at most every 10 s): quick feedback on a short run, a
# readable log of a long one.
LINE_EVERY_S = (1.0, 10.0)


def line_interval(since_first_s: float, bounds: tuple[float, float] = LINE_EVERY_S) -> float:
    low, high = bounds
    return min(high, max(low, since_first_s / 10))


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(planned: int, written: int, rate: float) -> str:
    """'frames 120/442 (27%), 9.8 frames/s, ETA 0:33'."""
    share = f" ({100 * written / planned:.0f}%)" if planned else ""
    eta = (planned - written) / rate if rate > 0 and planned >= written else None
    return f"frames {written}/{planned}{share}, {rate:.1f} frames/s, ETA {format_eta(eta)}"


class ProgressWatcher:
    """A daemon thread that shows the workers' totals until `stop()`."""

    def __init__(self, stream: TextIO | None = None,
                 line_every_s: tuple[float, float] = LINE_EVERY_S):
        self._scratch = storage.ScratchDir("beam_seg_progress_")
        self.dir = self._scratch.name
        self._stream = stream or sys.stderr
        self._line_every_s = line_every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="beam-seg-progress", daemon=True)
        self._bar = None

    def __enter__(self) -> ProgressWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._scratch.cleanup()

    def _run(self) -> None:
        first: tuple[float, int] | None = None  # when frames first showed up, and how many
        last_line = 0.0
        shown = (-1, -1)
        tty = hasattr(self._stream, "isatty") and self._stream.isatty()
        while True:
            stopping = self._stop.wait(POLL_S)
            planned, written = read_totals(self.dir)
            now = time.monotonic()
            if written and first is None:
                first = (now - POLL_S, 0)  # they were written within the last poll
            # the rate since the first frame: model loading and planning are not frames/s
            rate = (written - first[1]) / (now - first[0]) if first and now > first[0] else 0.0
            if tty:
                self._update_bar(planned, written)
            elif (planned, written) != shown and written and (
                    now - last_line >= line_interval(now - first[0], self._line_every_s)
                    or last_line == 0.0 or stopping):
                print(f"progress: {progress_line(planned, written, rate)}",
                      file=self._stream, flush=True)
                last_line, shown = now, (planned, written)
            if stopping:
                break
        if self._bar is not None:
            self._bar.close()

    def _update_bar(self, planned: int, written: int) -> None:
        if self._bar is None:
            if not planned:
                return
            from tqdm import tqdm

            self._bar = tqdm(total=planned, unit="frame", file=self._stream, dynamic_ncols=True,
                             desc="segmenting")
        self._bar.total = max(planned, written)
        self._bar.update(written - self._bar.n)
