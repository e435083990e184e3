"""`beam-seg` run by tests: in this process with its output captured (`run_in_process`), or
`segment` in a child process with its stderr a pipe, each line stamped as it arrives (the
demo runs that several test modules share are fixtures in conftest.py)."""

from __future__ import annotations

import contextlib
import io
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from beam_seg import cli

from conftest import DATA, ROOT

DEMO_CLIP = DATA / "videos" / "udacity_solidWhiteRight.mp4"
DEMO_STILL = DATA / "images" / "dashcam" / "lanes_solidWhiteCurve.jpg"


def sigint_as_a_shell_gives_it(ignored: bool = False):
    """A `preexec_fn`: the child's SIGINT as a shell sets it for a job, the default for one in
    the foreground, ignored for one in the background (`&` in a script, nohup), whatever the
    tests' own process has. A test run started in the background of a script ignores SIGINT,
    its children inherit that across exec, and beam-seg keeps an ignored SIGINT ignored: the
    Ctrl-C tests then saw exit 0 instead of 130."""
    handler = signal.SIG_IGN if ignored else signal.SIG_DFL
    return lambda: signal.signal(signal.SIGINT, handler)


def run_in_process(*argv: object) -> tuple[int, str, str]:
    """`beam-seg ARGV…` through `cli.main` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


class TimedRun:
    """`beam-seg segment …` in a child process, every stderr line stamped as it arrives."""

    def __init__(self, *args: str):
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "beam_seg.cli", "segment", *args],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=sigint_as_a_shell_gives_it())
        self.lines: list[tuple[float, str]] = []
        self.stdout: list[str] = []
        # one reader per pipe (communicate() would race the stderr reader for the last lines)
        self._readers = [threading.Thread(target=self._read_stderr, daemon=True),
                         threading.Thread(target=lambda: self.stdout.extend(self.proc.stdout), daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((time.monotonic() - self.started, line.rstrip("\n")))

    def wait(self, timeout: float) -> tuple[int, float, str]:
        self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return self.proc.returncode, time.monotonic() - self.started, "".join(self.stdout)

    def wait_for(self, prefix: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(line.startswith(prefix) for _, line in self.lines):
            assert time.monotonic() < deadline, f"no {prefix!r} line: {self.lines}"
            assert self.proc.poll() is None, f"ended early: {self.lines}"
            time.sleep(0.2)


@dataclass(frozen=True)
class FinishedRun:
    out: Path
    code: int
    wall_s: float
    stdout: str
    lines: list[tuple[float, str]]  # stderr, stamped in seconds since the start


def finished_run(out: Path, *args: str) -> FinishedRun:
    run = TimedRun(*args, "--output", str(out))
    code, wall_s, stdout = run.wait(timeout=900)
    return FinishedRun(out, code, wall_s, stdout, run.lines)
