"""The ffmpeg child processes under video.py: how they are started, bounded and read.

Every child is either run to completion under a time limit (`run`) or streamed under a
`Watchdog` that kills it when it moves no frame for a while, so a stuck decoder, encoder
or concat fails its step with a reason instead of hanging the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import weakref

import imageio_ffmpeg


class VideoError(RuntimeError):
    """The file is not a decodable video (no video stream, corrupt, truncated …)."""


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


PROBE_TIMEOUT_S = 1800  # a stream copy of hours of video takes seconds; a hang becomes an error
STALL_TIMEOUT_S = 120.0  # a streaming ffmpeg that moves no frame for this long is killed


_children: weakref.WeakSet[subprocess.Popen] = weakref.WeakSet()


def popen(args: list[str], **kwargs) -> subprocess.Popen:
    """Start an ffmpeg child in a session (and process group) of its own, so a signal sent
    to beam-seg's group (Ctrl-C in a terminal, a scheduler) reaches only beam-seg, which
    stops its children itself (`kill_children`): a child never dies of a signal behind the
    run's back and turns an interrupt into a failed input."""
    proc = subprocess.Popen(args, start_new_session=True, **kwargs)
    _children.add(proc)
    return proc


def kill_children() -> None:
    """Kill every ffmpeg child still running (a run that is being stopped)."""
    for proc in list(_children):
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)


def exit_reason(code: int, stderr: str) -> str:
    """Why an ffmpeg child failed: its last line, or the signal that killed it (which only
    happens when something outside beam-seg killed it)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"ffmpeg was killed by {name} (not by beam-seg)"
    return last_error(stderr)


def input_args(path: str) -> list[str]:
    """An input that may only be read from local files or pipes: a file that is really a
    playlist (HLS, ffconcat) cannot make ffmpeg fetch URLs."""
    return ["-protocol_whitelist", "file,pipe", "-i", path]


def run(args: list[str], timeout: float | None = None,
        stall_s: float | None = None) -> subprocess.CompletedProcess:
    """ffmpeg to completion; one that runs past `timeout` is killed and raises VideoError.

    With `stall_s`, ffmpeg also reports its progress twice a second on a pipe of its own
    (`-progress pipe:N`), and one whose reports stop for that long is killed: a long job
    (listing the packets of hours of video, joining many segments) may take its time, a
    stuck one may not.
    """
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin"]
    if stall_s is None:
        with popen([*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise VideoError(f"ffmpeg did not finish within {timeout:.0f} s") from None
            return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    reports, report_end = os.pipe()
    command += ["-progress", f"pipe:{report_end}", "-stats_period", "0.5", *args]
    try:
        proc = popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(report_end,))
    finally:
        os.close(report_end)
    last_report = [time.monotonic()]

    def listen() -> None:
        with os.fdopen(reports, "rb") as stream:
            for _ in stream:
                last_report[0] = time.monotonic()

    threading.Thread(target=listen, daemon=True, name="ffmpeg-progress").start()
    started = time.monotonic()
    while True:
        try:
            stdout, stderr = proc.communicate(timeout=0.5)
            return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
        except subprocess.TimeoutExpired:
            now = time.monotonic()
            if now - last_report[0] > stall_s:
                reason = f"ffmpeg stalled: no progress for {stall_s:.0f} s"
            elif timeout is not None and now - started > timeout:
                reason = f"ffmpeg did not finish within {timeout:.0f} s"
            else:
                continue
            proc.kill()
            proc.communicate()
            raise VideoError(reason) from None


def last_error(stderr: str) -> str:
    """The last non-empty line ffmpeg printed: usually its reason."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "ffmpeg gave no reason"


class Watchdog:
    """Kills a streaming ffmpeg that blocks one of our reads or writes for too long.

    Armed only while this side waits on the pipe (`with watchdog:`), so time spent by the
    model between frames never counts as a stall. One thread per child, waking a few
    times a second.
    """

    def __init__(self, proc: subprocess.Popen, timeout_s: float, role: str):
        self.proc, self.timeout_s, self.role = proc, timeout_s, role
        self.fired = False
        self._deadline: float | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name=f"ffmpeg-{role}-watchdog")
        self._thread.start()

    def __enter__(self) -> Watchdog:
        self._deadline = time.monotonic() + self.timeout_s
        return self

    def __exit__(self, *exc) -> None:
        self._deadline = None

    def _watch(self) -> None:
        while not self._stopped.wait(min(0.5, self.timeout_s / 4)):
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline:
                self.fired = True
                with contextlib.suppress(OSError):
                    self.proc.kill()
                return

    def check(self) -> None:
        """Raise VideoError if the child was killed for stalling."""
        if self.fired:
            raise VideoError(f"ffmpeg {self.role} stalled: nothing moved for {self.timeout_s:.0f} s")

    def stop(self) -> None:
        self._stopped.set()


# Niceness of the ffmpeg decoders and encoders that stream beside inference. The model's
# threads meet at a barrier after every layer, so a core lent to ffmpeg at the wrong
# moment idles the other one; at lower priority ffmpeg fills the gaps instead
# (measured on 2 cores: +3% frames/s, and decoding still keeps ahead of the model).
FFMPEG_NICENESS = 10


def background(proc: subprocess.Popen) -> None:
    """Lower a streaming ffmpeg's priority (best effort: not every OS or sandbox allows it)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, proc.pid, FFMPEG_NICENESS)


def widen_pipe(stream, frame_bytes: int) -> None:
    """Let a pipe hold up to a whole frame (Linux; 64 KiB by default), so a frame passes
    in one go instead of waking the reader and the writer a dozen times each."""
    try:
        import fcntl
        setpipe = fcntl.F_SETPIPE_SZ
    except (ImportError, AttributeError):  # not Linux
        return
    for size in (frame_bytes, 1 << 20):  # the system's cap (pipe-max-size) is often 1 MiB
        try:
            fcntl.fcntl(stream.fileno(), setpipe, size)
            return
        except OSError:
            continue


def read_exactly(stream, n: int) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        chunk = stream.readinto(view[got:])
        if not chunk:
            return None
        got += chunk
    return buf
