"""How long a remote storage call may take, and what a storage outage is.

Remote calls get a bounded total deadline (`set_deadline`, the run's --storage-deadline):
one the store does not answer in time fails with `StorageUnavailable`, whatever the client
library's own retries (about 120 s per call for GCS) would do. The first such failure is
logged once, and every later remote call of the process then fails at once, so a run whose
output has gone away ends within about one deadline instead of one per file. operations.py
routes its calls through `bounded`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("beam_seg")
T = TypeVar("T")

DEFAULT_DEADLINE_S = 60.0
WRITE_PROBE = ".beam_seg_write_check"  # the file `operations.probe_write` writes and removes
_deadline_s = DEFAULT_DEADLINE_S
_outage: str | None = None  # why the remote store is taken to be gone, once it is
_outage_lock = threading.Lock()
_OUTAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO}


class StorageUnavailable(OSError):
    """The store did not answer within the deadline, or an earlier call of this process
    already found it gone: the run cannot write there (exit code 4 when even its error
    records cannot be written)."""


def reset_outage() -> None:
    """Forget an earlier run's outage (the launcher of a new run, in the same process)."""
    global _outage
    _outage = None
    _noted.clear()


_noted: set[int] = set()


def note_local_failure(uri: str, exc: OSError) -> None:
    """A local write failed because the disk did (full, read-only): say so once, at once.
    Local calls fail fast by themselves, so nothing is tripped."""
    reason = outage_reason(exc)
    if uri.endswith(WRITE_PROBE):
        return  # the launcher's writability probe reports its own failure
    if reason is not None and exc.errno not in _noted:
        _noted.add(exc.errno)
        log.error("beam-seg: cannot write to %s (%s); the files that do not fit become error "
                  "records while those can be written, and a re-run resumes", uri, reason)


def set_deadline(seconds: float) -> None:
    """Bound every remote call to about `seconds`, retries included. Also shortens the GCS
    client's own retry budget, so a call given up here does not keep retrying in the
    background for minutes."""
    global _deadline_s
    if float(seconds) == _deadline_s:
        return
    _deadline_s = float(seconds)
    with contextlib.suppress(ImportError):
        from apache_beam.io.gcp import gcsio_retry

        for name in ("DEFAULT_RETRY", "DEFAULT_RETRY_WITH_THROTTLING_COUNTER"):
            setattr(gcsio_retry, name, getattr(gcsio_retry, name).with_timeout(_deadline_s))


def deadline_s() -> float:
    return _deadline_s


def outage() -> str | None:
    """Why this process takes the remote store to be gone (None: it is not)."""
    return _outage


def outage_reason(exc: BaseException) -> str | None:
    """'No space left on device' & co. when `exc` (or what it wraps) means the storage itself
    failed: full, read-only, not answering. None for errors of one file or one input."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, StorageUnavailable):
            return str(e)
        if isinstance(e, OSError) and e.errno in _OUTAGE_ERRNOS:
            return f"{os.strerror(e.errno)}" + (f": {e.filename}" if e.filename else "")
        name = type(e).__name__
        if name in ("RetryError", "ConnectionError", "ConnectTimeout", "ReadTimeout",
                    "ServiceUnavailable", "GatewayTimeout", "TimeoutError"):
            return f"{name}: {str(e)[:160]}"
        details = getattr(e, "exception_details", None)  # Beam's BeamIOError wraps per path
        if isinstance(details, dict):
            stack += [d for d in details.values() if isinstance(d, BaseException)]
        stack += [e.__cause__, e.__context__]
    return None


def _trip(uri: str, reason: str) -> None:
    global _outage
    with _outage_lock:
        if _outage is not None:
            return
        _outage = reason
    log.error("beam-seg: cannot reach %s (%s); the rest of this run's writes there fail at "
              "once, and a re-run resumes", uri, reason)


def bounded(uri: str, local: bool, fn: Callable[..., T], *args, streaming: bool = False) -> T:
    """Run one storage call; a remote one within the deadline (in a daemon thread, left to
    end on its own if it overruns), and not at all once the store is known to be gone.

    `streaming` calls (uploads, downloads of any size) run here, without a deadline of
    their own: the client's retries, bounded by `set_deadline`, end them when the store
    stops answering.
    """
    if local:
        return fn(*args)
    if _outage is not None:
        raise StorageUnavailable(f"{uri}: storage unavailable ({_outage})")
    deadline = _deadline_s
    try:
        if streaming:
            return fn(*args)
        return _within_deadline(deadline, fn, *args)
    except _Overrun:
        reason = f"no answer within {deadline:.0f} s"
        _trip(uri, reason)
        raise StorageUnavailable(f"{uri}: {reason}") from None
    except Exception as exc:
        reason = outage_reason(exc)
        if reason is not None:
            _trip(uri, reason)
            raise StorageUnavailable(f"{uri}: {reason}") from exc
        raise


class _Overrun(Exception):
    """The call did not return within the deadline (not a TimeoutError the call raised)."""


def _within_deadline(deadline: float, fn: Callable[..., T], *args) -> T:
    future: concurrent.futures.Future = concurrent.futures.Future()

    def call() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to the caller, who re-raises it
            future.set_exception(exc)

    threading.Thread(target=call, daemon=True, name="beam_seg_storage").start()
    done, _ = concurrent.futures.wait([future], timeout=deadline)
    if not done:
        raise _Overrun()
    return future.result()


def within_deadline(uri: str, fn: Callable[..., T], *args) -> T:
    """Run a read of one input within the run's deadline, local files included: a regular
    file on a network mount that stopped answering then fails as one input, with a reason,
    instead of stalling its worker for good (the blocked read is left to end on its own).
    It says nothing about the store as a whole, so no outage is declared."""
    deadline = _deadline_s
    try:
        return _within_deadline(deadline, fn, *args)
    except _Overrun:
        raise TimeoutError(f"{uri}: no answer within {deadline:.0f} s (--storage-deadline)") from None
