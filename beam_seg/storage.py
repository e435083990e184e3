"""All file access goes through Beam's FileSystems so local paths, gs:// and s3:// behave alike.

Writes are atomic: local files are written to a temporary sibling and renamed; object
stores (gs://, s3://) only make an object visible when its upload completes, so a single
upload is already atomic there. A retried or killed step therefore never leaves a
half-written output behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

_CHUNK = 8 * 1024 * 1024


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def _local_path(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def join(base: str, *parts: str) -> str:
    """Join URI parts with '/', for local paths and object stores alike."""
    if is_local(base):
        return os.path.join(base, *parts)
    return posixpath.join(base, *parts)


def absolute(uri: str) -> str:
    return os.path.abspath(uri) if is_local(uri) else uri


def exists(uri: str) -> bool:
    return FileSystems.exists(uri)


def read_bytes(uri: str) -> bytes:
    with FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


def size(uri: str) -> int:
    return FileSystems.match([uri])[0].metadata_list[0].size_in_bytes


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file atomically."""
    with open_for_write(uri) as f:
        f.write(data)


@contextlib.contextmanager
def open_for_write(uri: str) -> Iterator:
    """A writable binary stream whose content appears at `uri` only if the block succeeds."""
    if is_local(uri):
        path = _local_path(uri)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as f:
                yield f
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:
        f = FileSystems.create(uri, mime_type="application/octet-stream",
                               compression_type=CompressionTypes.UNCOMPRESSED)
        try:
            yield f
        finally:
            f.close()


def upload_file(local_path: str, uri: str) -> None:
    """Copy a finished local file to `uri` atomically."""
    with open(local_path, "rb") as src, open_for_write(uri) as dst:
        shutil.copyfileobj(src, dst, _CHUNK)


def download_file(uri: str, local_path: str) -> None:
    tmp = f"{local_path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED) as src, \
                open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
        os.replace(tmp, local_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def local_cache_dir() -> str:
    """Per-machine scratch space for copies of remote inputs (ffmpeg needs seekable files)."""
    path = os.path.join(tempfile.gettempdir(), "beam_seg_inputs")
    os.makedirs(path, exist_ok=True)
    return path


def local_copy(uri: str) -> str:
    """A local, seekable path for `uri`: the file itself when local, else a cached download.

    One download per worker machine per input: the segments of a long video that land
    on the same worker reuse it.
    """
    if is_local(uri):
        return _local_path(uri)
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    suffix = os.path.splitext(uri)[1][:8]
    path = os.path.join(local_cache_dir(), digest + suffix)
    if not os.path.exists(path):
        download_file(uri, path)
    return path


def delete(uri: str) -> None:
    """Remove one file if it exists."""
    if exists(uri):
        FileSystems.delete([uri])


def delete_tree(uri: str) -> None:
    """Remove a directory of intermediate files; missing is fine."""
    if is_local(uri):
        shutil.rmtree(_local_path(uri), ignore_errors=True)
        return
    prefix = uri.rstrip("/") + "/"
    matched = FileSystems.match([prefix + "**"])[0].metadata_list
    if matched:
        FileSystems.delete([m.path for m in matched])


def list_files(pattern: str) -> list[str]:
    """Paths matching a glob, sorted; an empty list when nothing matches."""
    result = FileSystems.match([pattern])[0]
    return sorted(m.path for m in result.metadata_list)
