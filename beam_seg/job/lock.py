"""One writer per output root: `OUT/_lock.json` names the run that holds it.

Two runs into one OUT would rewrite each other's segments, delete each other's `_work`
and vouch for videos they did not assemble, so the launcher takes this lock before it
reads anything under OUT and keeps it until the pipeline has finished:

- it is created exclusively (a hard link locally, `ifGenerationMatch=0` on GCS), so of two
  runs started together exactly one gets it, and the other refuses with one line (exit 2);
- it names its holder (host, pid, start time) and a lease that a thread renews every
  `REFRESH_S` while the run lives;
- a lock whose holder is gone is taken over, with a warning: on this host when its process
  no longer exists, from another host once its lease has run out (`LEASE_S` without a
  renewal). The stale lock is removed only if it is still the version judged stale, so
  two runs taking over at once cannot both win.

A launcher that dies leaves its lock behind; the next run on the same host takes it over
at once, a run elsewhere after the lease. A Dataflow job outlives its launcher: kill the
job too, or wait for it, before starting another run into the same OUT.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from beam_seg import storage
from beam_seg.job.exits import UsageError

log = logging.getLogger("beam_seg")

LOCK_NAME = "_lock.json"
LEASE_S = 120.0
REFRESH_S = 20.0


def _process_start(pid: int) -> str | None:
    """The kernel's start time of a process (field 22 of /proc/PID/stat): a pid that was
    reused by another process has another one. None where /proc is not available."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    return start is None or _process_start(pid) in (None, start)


@dataclass(frozen=True)
class Holder:
    """Who holds the lock, as written in it."""

    host: str
    pid: int
    started: str  # ISO time the run started
    token: str  # unique per run: tells our own lock from a successor's
    expires: float  # epoch seconds; renewed every REFRESH_S
    process_start: str | None = None

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started}"

    def stale_because(self, now: float) -> str | None:
        """Why this holder is gone, or None while it may still be writing."""
        if self.host == socket.gethostname():
            if not _alive(self.pid, self.process_start):
                return f"its process {self.pid} is gone"
            return None
        if now > self.expires:
            return f"its lease ran out {now - self.expires:.0f} s ago"
        return None


def _parse(data: bytes) -> Holder | None:
    try:
        return Holder(**json.loads(data))
    except (ValueError, TypeError):
        return None


class OutputLock:
    """`with OutputLock(root):` holds OUT's lock for the block (see the module docstring)."""

    def __init__(self, root: str):
        self.root = root
        self.uri = storage.join(root, LOCK_NAME)
        pid = os.getpid()
        self.holder = Holder(socket.gethostname(), pid,
                             datetime.now(UTC).isoformat(timespec="seconds"),
                             uuid.uuid4().hex, time.time() + LEASE_S, _process_start(pid))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self) -> bytes:
        return json.dumps(asdict(self.holder), sort_keys=True).encode()

    def acquire(self) -> None:
        """Take the lock, taking over a stale one; UsageError (exit 2) while another run has it."""
        for _ in range(5):
            if storage.create_exclusive(self.uri, self._record()):
                self._thread = threading.Thread(target=self._renew, daemon=True,
                                                name="beam_seg_lock")
                self._thread.start()
                return
            current = storage.read_versioned(self.uri)
            if current is None:
                continue  # released in between: try again
            data, version = current
            other = _parse(data)
            why = other.stale_because(time.time()) if other else "it is unreadable"
            if why is None:
                raise UsageError(
                    f"another run is writing to {self.root} ({other.describe()}); wait for it to "
                    f"finish or choose another --output (its lock: {self.uri})")
            log.warning("beam-seg: taking over the lock on %s from %s: %s", self.root,
                        other.describe() if other else "an unknown run", why)
            storage.delete_if_version(self.uri, version)
        raise UsageError(f"could not take the lock {self.uri}: other runs keep taking it")

    def _ours(self, current: tuple[bytes, str] | None) -> bool:
        holder = _parse(current[0]) if current else None
        return holder is not None and holder.token == self.holder.token

    def _renew(self) -> None:
        while not self._stop.wait(REFRESH_S):
            try:
                current = storage.read_versioned(self.uri)
                renewed = Holder(**{**asdict(self.holder), "expires": time.time() + LEASE_S})
                record = json.dumps(asdict(renewed), sort_keys=True).encode()
                if not (self._ours(current) and storage.replace_if_version(self.uri, record, current[1])):
                    log.error("beam-seg: the lock on %s was taken by another run; outputs may "
                              "now be mixed, re-run with --overwrite when it has finished", self.root)
                    return
                self.holder = renewed
            except Exception as exc:  # a missed renewal only shortens the lease
                log.warning("beam-seg: could not renew the lock on %s: %s", self.root, exc)

    def release(self, join_s: float = 5.0) -> None:
        """Remove the lock if it is still ours (best effort: a stale lock is taken over anyway)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=join_s)
        try:
            current = storage.read_versioned(self.uri)
            if self._ours(current):
                storage.delete_if_version(self.uri, current[1])
        except Exception as exc:
            log.warning("beam-seg: could not remove the lock %s: %s", self.uri, exc)

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
