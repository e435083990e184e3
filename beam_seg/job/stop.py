"""Stopping a run when asked: SIGINT (Ctrl-C) and SIGTERM (a container stop, a scheduler).

While a run holds its output root, a signal stops it at once, in this order:

1. no write under OUT starts any more, and the ones in flight are waited for (each is a
   whole-file atomic write: a few milliseconds);
2. the ffmpeg children are killed (they run in process groups of their own, so a signal
   to beam-seg's group never reaches them directly), and so are the DirectRunner's worker
   processes if any (multi_processing mode), and the run's /tmp folders are removed;
3. the lock is released (only now: nothing can be written after it), one line says what
   is kept and how to resume, and the process exits 130 (SIGINT) or 143 (SIGTERM).

The exit is `os._exit`: the DirectRunner's worker threads may be inside TensorFlow Lite's
native code, and letting the interpreter finalise around them can end in a C++ abort
("terminate called without an active exception"). Everything a run keeps is already on
storage, so nothing is lost by not unwinding.

The kernel gives a signal sent to the process to any one of its threads, but Python runs
signal handlers only in the main thread, and only when it runs Python code. So the main
thread never sits in one long wait while the pipeline runs (`run_beside_main_thread`).

Before the lock is taken nothing has been written, so a signal then simply ends the run
with the same exit codes. A SIGINT that was ignored when beam-seg started (`nohup`, a
script's background job) stays ignored for the whole run, children included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from beam_seg import storage
from beam_seg.media import ffmpeg

DRAIN_S = 5.0  # at most this long for the writes in flight to end
SIGNAL_POLL_S = 0.1  # the main thread looks for a signal at least this often while a run goes on

T = TypeVar("T")


class Interrupted(BaseException):
    """A stop signal arrived before the run held its lock (nothing written yet)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def kill_child_processes() -> None:
    """SIGKILL this process's own children (the DirectRunner's worker processes in
    multi_processing mode write outputs too, past our write gate); Linux /proc only."""
    me = os.getpid()
    with contextlib.suppress(OSError):
        pids = [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == me:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


_on_stop: Callable[[int], None] | None = None


def _handle(signum: int, frame) -> None:
    if _on_stop is not None:
        _on_stop(signum)  # never returns
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_handled() -> Iterator[None]:
    """SIGINT and SIGTERM stop the run (see the module docstring) inside the block; outside
    the main thread (a library caller's thread) signals are left as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) == signal.SIG_IGN:
            continue  # ignored by whoever started us: ignored for the whole run
        previous[sig] = signal.signal(sig, _handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def stop_writes_on_signal(release: Callable[[], None], message: Callable[[int], str]) -> Iterator[None]:
    """Inside the block (the run holds its lock), a signal stops the run and the process:
    writes, children and scratch folders, then `release()` the lock, then `message(signum)`
    on stderr, then exit 128 + signum."""
    global _on_stop

    def stop(signum: int) -> None:
        global _on_stop
        _on_stop = None
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal: the first stop goes on
            signal.signal(sig, signal.SIG_IGN)
        drained = storage.stop_writes(DRAIN_S)
        ffmpeg.kill_children()
        kill_child_processes()
        storage.remove_scratch()
        if drained:  # else a write may still land: the lock stays, for the next run to take over
            with contextlib.suppress(Exception):
                release()
        with contextlib.suppress(Exception):
            line = message(signum)
            os.write(2, ("\n" + line + "\n").encode("utf-8", "replace"))
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os._exit(128 + signum)

    _on_stop = stop
    try:
        yield
    finally:
        _on_stop = None


def run_beside_main_thread(work: Callable[[], T]) -> T:
    """`work()` in a thread of its own, while the main thread waits for it in steps of
    SIGNAL_POLL_S, so that a stop signal is acted on within SIGNAL_POLL_S whichever thread
    the kernel gave it to. When the main thread itself waited on the DirectRunner's bundle,
    a Ctrl-C that landed on another thread (about 1 in 35) was heard only when the bundle
    ended: 15 s later in a test, at the end of the run. Outside the main thread, `work()`
    runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        return work()
    values: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            values.append(work())
        except BaseException as exc:  # handed to the main thread as it is
            errors.append(exc)

    thread = threading.Thread(target=target, name="beam-seg-run", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(SIGNAL_POLL_S)
    if errors:
        raise errors[0]
    return values[0]
