"""The file layer without Beam: local paths directly, other URIs through `beam_seg.storage`.

Analytics (`beam-seg report`, `eval`, `events`) read a run's outputs on a laptop, where
importing Apache Beam would cost seconds for nothing, so local files are handled here and
`beam_seg.storage` (Beam's FileSystems) is imported only when a remote URI (gs://, s3://)
is actually used. `storage` builds on the same helpers, so both agree on what a local path
is and write local files the same way: `atomic_path`, the one place that turns a temporary
file into an output.
"""

from __future__ import annotations

import contextlib
import glob
import os
import posixpath
import re
import shutil
import stat
import tempfile
import threading
import uuid
from collections.abc import Iterator


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def join(base: str, *parts: str) -> str:
    """Join URI parts with '/', for local paths and object stores alike."""
    if is_local(base):
        return os.path.join(base, *parts)
    return posixpath.join(base, *parts)


def literal(uri: str) -> str:
    """`uri` escaped for a glob match, so that an output root named `out*y` or `out[2]`
    matches only itself, never another folder (`[*]` is a literal `*` to glob and fnmatch)."""
    return glob.escape(uri)


def absolute(uri: str) -> str:
    return os.path.abspath(local_path(uri)) if is_local(uri) else uri


# What `atomic_path` (".name.tmp-1a2b3c4d") and `storage.create` ("name.tmp-1a2b3c4d") write
# before the final name (both through `temp_sibling`): a writer killed in between leaves one.
TEMP_NAME = re.compile(r"\.tmp-[0-9a-f]{8}$")
LOCK_NAME = "_lock.json"
# What a killed writer of a run's outputs leaves: atomic_path's hidden temporary of one of
# our output files (".000031.png.tmp-ee40dd7f"). Nothing else is ever swept.
_OUR_TEMP = re.compile(r"^\.[A-Za-z0-9._-]+\.(png|jpg|webp|parquet|mp4|json|jsonl)\.tmp-[0-9a-f]{8}$")
# The folders of an output root that a run writes (beam_seg/naming.py), and how deep
# below each its files lie: labels/<id>/000000.png is 1 folder down, videos/<id>.mp4 is 0.
OUTPUT_FOLDERS = {"labels": 1, "overlays": 1, "coverage": 1, "_work": 1, "videos": 0,
                  "events": 0, "errors": 0, "_done": 0}


def temp_sibling(path: str, hidden: bool = True) -> str:
    """A unique temporary name next to `path`, of the form `remove_stale_temps` recognises."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f"{'.' if hidden else ''}{name}.tmp-{uuid.uuid4().hex[:8]}")


def _output_folders(root: str) -> Iterator[str]:
    """The folders of `root` a run writes files into (real folders only, never symlinks)."""
    for top, depth in OUTPUT_FOLDERS.items():
        base = os.path.join(root, top)
        if not os.path.isdir(base) or os.path.islink(base):
            continue
        if depth == 0:
            yield base
            continue
        with contextlib.suppress(OSError), os.scandir(base) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    yield entry.path


def remove_stale_temps(root: str) -> int:
    """Remove the temporary files that killed writers left in a local output root, so that a
    re-run ends with exactly a clean run's files. Only what a run itself makes is touched:
    plain files named like `atomic_path`'s temporary of one of our outputs, directly inside
    a folder the run writes (labels/<id>/, coverage/<id>/, videos/ ...); never a folder, a
    symlink, or anything elsewhere in OUT. Call it only while holding the root's lock and
    after the run's checks have passed. Returns how many were removed."""
    if not is_local(root) or not os.path.isdir(local_path(root)):
        return 0
    removed = 0
    for folder in _output_folders(local_path(root)):
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                if _OUR_TEMP.match(entry.name) and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(entry.path)
                    removed += 1
    return removed


# --- Stopping: no write after a stop, and the run's scratch folders -----------------------

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
    for name in list(_scratch):
        shutil.rmtree(name, ignore_errors=True)
        _scratch.discard(name)


def remove_empty_work_folder(root: str) -> None:
    """`_work/` holds the segments of unfinished videos; once none is left, it goes."""
    if is_local(root):
        with write_gate(), contextlib.suppress(OSError):  # not empty, or not there: it stays
            os.rmdir(os.path.join(local_path(root), "_work"))


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary sibling of `path` to write; it becomes `path` only if the block succeeds.

    The temporary name is hidden (a leading dot), so a write cut short by a kill never
    matches an output glob, and it is removed (file or directory) when the block fails.
    `os.replace` is atomic on POSIX: readers see the old file or the new one, never a part.
    """
    path = os.path.abspath(local_path(path))
    with write_gate():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = temp_sibling(path)
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            if os.path.isdir(tmp) and not os.path.islink(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            elif os.path.lexists(tmp):
                os.remove(tmp)


def _storage():
    from beam_seg import storage  # Beam: only for remote URIs

    return storage


_FILE_TYPES = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def not_a_regular_file(uri: str) -> str | None:
    """What a local input is when it is not a regular file ('a FIFO (named pipe)' …), else
    None: reading a FIFO or a device would block or never end, so such inputs are refused
    when the run is planned. Remote objects are always files."""
    if not is_local(uri):
        return None
    mode = os.stat(local_path(uri)).st_mode
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _FILE_TYPES if test(mode)), "not a regular file")


def open_regular(uri: str):
    """A local input opened for reading, refused if it is not a regular file by the time it
    is opened (replaced by a FIFO since the plan), never waited on: it is opened without
    blocking, then checked. Remote objects are always files."""
    if not is_local(uri):
        return _storage().open_for_read(uri)
    fd = os.open(local_path(uri), os.O_RDONLY | os.O_NONBLOCK)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ValueError(f"not a regular file: {next((w for t, w in _FILE_TYPES if t(mode)), '?')}")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_bytes(uri: str) -> bytes:
    if not is_local(uri):
        return _storage().read_bytes(uri)
    with open(local_path(uri), "rb") as f:
        return f.read()


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file atomically (local: `atomic_path`; object stores: one upload)."""
    if not is_local(uri):
        _storage().write_bytes(uri, data)
        return
    with atomic_path(uri) as tmp, open(tmp, "wb") as f:
        f.write(data)


def download_file(uri: str, path: str) -> None:
    """Copy any URI to a local file atomically (remote objects are checked, see storage)."""
    if not is_local(uri):
        _storage().download_file(uri, path)
        return
    with atomic_path(path) as tmp:
        shutil.copyfile(local_path(uri), tmp)


def exists(uri: str) -> bool:
    if not is_local(uri):
        return _storage().exists(uri)
    return os.path.exists(local_path(uri))


def delete(uri: str) -> None:
    """Remove one file if it exists."""
    if not is_local(uri):
        _storage().delete(uri)
        return
    with write_gate(), contextlib.suppress(FileNotFoundError, NotADirectoryError):
        os.remove(local_path(uri))


def is_dir(uri: str) -> bool:
    """A local directory; any remote prefix counts as one (object stores have no directories)."""
    return not is_local(uri) or os.path.isdir(local_path(uri))


def list_files(pattern: str) -> list[str]:
    """Paths matching a glob (`*` stays within one path segment locally), sorted."""
    if not is_local(pattern):
        return _storage().list_files(pattern)
    return sorted(glob.glob(local_path(pattern)))
