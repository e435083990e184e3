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


def absolute(uri: str) -> str:
    return os.path.abspath(local_path(uri)) if is_local(uri) else uri


# What `atomic_path` (".name.tmp-1a2b3c4d") and `storage.create` ("name.tmp-1a2b3c4d") write
# before the final name (both through `temp_sibling`): a writer killed in between leaves one.
TEMP_NAME = re.compile(r"\.tmp-[0-9a-f]{8}$")
LOCK_NAME = "_lock.json"


def temp_sibling(path: str, hidden: bool = True) -> str:
    """A unique temporary name next to `path`, of the form `remove_stale_temps` recognises."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f"{'.' if hidden else ''}{name}.tmp-{uuid.uuid4().hex[:8]}")


def remove_stale_temps(root: str) -> int:
    """Remove the temporary files and folders that killed writers left under a local output
    root, so that a re-run ends with exactly a clean run's files. Call it only while holding
    the root's lock: then no other run can have a write in flight (the lock's own are spared,
    its renewal writes them). Returns how many were removed."""
    if not is_local(root) or not os.path.isdir(local_path(root)):
        return 0
    removed = 0
    for directory, folders, names in os.walk(local_path(root)):
        for name in [*names, *folders]:
            if not TEMP_NAME.search(name) or name.lstrip(".").startswith(LOCK_NAME):
                continue
            path = os.path.join(directory, name)
            if name in folders:
                shutil.rmtree(path, ignore_errors=True)
                folders.remove(name)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
            removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary sibling of `path` to write; it becomes `path` only if the block succeeds.

    The temporary name is hidden (a leading dot), so a write cut short by a kill never
    matches an output glob, and it is removed (file or directory) when the block fails.
    `os.replace` is atomic on POSIX: readers see the old file or the new one, never a part.
    """
    path = os.path.abspath(local_path(path))
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
    with contextlib.suppress(FileNotFoundError):
        os.remove(local_path(uri))


def is_dir(uri: str) -> bool:
    """A local directory; any remote prefix counts as one (object stores have no directories)."""
    return not is_local(uri) or os.path.isdir(local_path(uri))


def list_files(pattern: str) -> list[str]:
    """Paths matching a glob (`*` stays within one path segment locally), sorted."""
    if not is_local(pattern):
        return _storage().list_files(pattern)
    return sorted(glob.glob(local_path(pattern)))
