"""Files that one writer at a time may change: the output lock's.

`create_exclusive` makes a file only if none exists; `read_versioned` reads it with a token
that changes on every rewrite, and `replace_if_version` / `delete_if_version` change it only
if it is still the version read. Atomic locally (hard links, renames) and on GCS (generation
preconditions); elsewhere a check then a write, which two racing callers can both pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid

from beam_seg.storage.operations import _bounded, _gcs_blob, _gcs_ref, delete, exists, read_bytes, write_bytes
from beam_seg.storage.paths import is_local, local_path, temp_sibling


def create_exclusive(uri: str, data: bytes) -> bool:
    """Create `uri` with `data` unless it exists; True if this call created it.

    Atomic where the store allows: a hard link of a finished temporary file locally (never
    a half-written file under the name), `ifGenerationMatch=0` on GCS. Elsewhere a check
    then a write, which two racing callers can both pass.
    """
    if is_local(uri):
        path = os.path.abspath(local_path(uri))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = temp_sibling(path, hidden=False)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            with contextlib.suppress(OSError):
                os.remove(tmp)
    if uri.startswith("gs://"):
        return _bounded(uri, _gcs_create_if_absent, uri, data)
    if not exists(uri):
        write_bytes(uri, data)
        return True
    return False


def _gcs_create_if_absent(uri: str, data: bytes) -> bool:
    from google.api_core import exceptions

    try:
        _gcs_ref(uri).upload_from_string(data, if_generation_match=0)
        return True
    except exceptions.PreconditionFailed:
        return False


def read_versioned(uri: str) -> tuple[bytes, str] | None:
    """A file's bytes and a token that changes whenever it is rewritten (inode and mtime
    locally, the generation on GCS); None when it does not exist."""
    if is_local(uri):
        path = local_path(uri)
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                return f.read(), f"{st.st_ino}:{st.st_mtime_ns}"
        except FileNotFoundError:
            return None
    if uri.startswith("gs://"):
        blob = _bounded(uri, _gcs_blob, uri)
        generation = blob.generation if blob else None  # first: a download resets the fields
        return None if blob is None else (_bounded(
            uri, lambda: blob.download_as_bytes(if_generation_match=generation)), str(generation))
    data = read_bytes(uri) if exists(uri) else None
    return None if data is None else (data, hashlib.sha256(data).hexdigest())


def replace_if_version(uri: str, data: bytes, version: str) -> bool:
    """Rewrite `uri` only if it is still the version read; True if this call rewrote it.
    On GCS a conditional upload; elsewhere a check then an atomic write (a narrow window)."""
    if uri.startswith("gs://"):
        from google.api_core import exceptions
        try:
            _bounded(uri, lambda: _gcs_ref(uri).upload_from_string(
                data, if_generation_match=int(version)))
            return True
        except exceptions.PreconditionFailed:
            return False
    current = read_versioned(uri)
    if current is None or current[1] != version:
        return False
    write_bytes(uri, data)
    return True


def delete_if_version(uri: str, version: str) -> bool:
    """Delete `uri` only if it is still the version read; True if this call deleted it.

    Locally the file is first renamed aside (atomic: of two callers, one gets it), then
    kept deleted only if it is the version read, else linked back."""
    if is_local(uri):
        path = local_path(uri)
        aside = f"{path}.stale-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return False
        st = os.stat(aside)
        if f"{st.st_ino}:{st.st_mtime_ns}" == version:
            os.remove(aside)
            return True
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)  # someone else's newer file: put it back (unless replaced)
        os.remove(aside)
        return False
    if uri.startswith("gs://"):
        from google.api_core import exceptions
        try:
            _bounded(uri, lambda: _gcs_ref(uri).delete(if_generation_match=int(version)))
            return True
        except (exceptions.PreconditionFailed, exceptions.NotFound):
            return False
    current = read_versioned(uri)
    if current is not None and current[1] == version:
        delete(uri)
    return current is not None and current[1] == version


