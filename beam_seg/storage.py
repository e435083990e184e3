"""All file access goes through Beam's FileSystems so local paths, gs:// and s3:// behave alike.

Writes are atomic: local files are written to a temporary sibling and renamed; object
stores (gs://, s3://) only make an object visible when its upload completes, so a single
upload is already atomic there, as long as a write that fails midway is cancelled rather
than completed (`open_for_write` does that). A retried or killed step therefore never
leaves a half-written output behind. Remote inputs that need a local file (ffmpeg seeks)
are copied once per machine and checked against GCS's crc32c (`local_copy`).

Local paths are handled by `beam_seg.files` (no Beam), which the analytics use too; this
module adds Beam's FileSystems for everything else.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_seg.files import absolute, atomic_path, is_local, join
from beam_seg.files import local_path as _local_path

__all__ = ["absolute", "is_local", "join"]  # re-exported: callers use storage for every path

_CHUNK = 8 * 1024 * 1024


def exists(uri: str) -> bool:
    return FileSystems.exists(uri)


def read_bytes(uri: str) -> bytes:
    with FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file atomically."""
    with open_for_write(uri) as f:
        f.write(data)


@contextlib.contextmanager
def open_for_write(uri: str) -> Iterator:
    """A writable binary stream whose content appears at `uri` only if the block succeeds."""
    if is_local(uri):
        with atomic_path(uri) as tmp, open(tmp, "wb") as f:
            yield f
    else:
        f = FileSystems.create(uri, mime_type="application/octet-stream",
                               compression_type=CompressionTypes.UNCOMPRESSED)
        try:
            yield f
        except BaseException:
            _abort_upload(f, uri)
            raise
        f.close()  # completes the upload: only now does the object exist


def _abort_upload(f, uri: str) -> None:
    """Drop an upload that failed midway, so that no partial object appears at `uri`.

    Closing an object-store writer completes its upload, whatever was written. GCS's writer
    (google-cloud-storage's BlobWriter) can cancel instead; for other stores the partial
    object is closed and removed.
    """
    terminate = getattr(f, "terminate", None)
    if callable(terminate):
        with contextlib.suppress(Exception):
            terminate()
        return
    with contextlib.suppress(Exception):
        f.close()
    with contextlib.suppress(Exception):
        FileSystems.delete([uri])


def upload_file(local_path: str, uri: str) -> None:
    """Copy a finished local file to `uri` atomically."""
    with open(local_path, "rb") as src, open_for_write(uri) as dst:
        shutil.copyfileobj(src, dst, _CHUNK)


def download_file(uri: str, local_path: str) -> None:
    """Copy `uri` to a local file atomically; a gs:// object is checked against its crc32c.

    Beam reads GCS objects in ranges, which the client does not checksum, so the whole
    download is compared with the checksum GCS keeps for every object.
    """
    expected = _gcs_crc32c(uri)
    crc = None
    if expected is not None:
        import google_crc32c  # a dependency of google-cloud-storage, so of apache-beam[gcp]

        crc = google_crc32c.Checksum()
    with atomic_path(local_path) as tmp:
        with FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED) as src, \
                open(tmp, "wb") as dst:
            for chunk in iter(lambda: src.read(_CHUNK), b""):
                dst.write(chunk)
                if crc is not None:
                    crc.update(chunk)
        if crc is not None and base64.b64encode(crc.digest()).decode() != expected:
            raise OSError(f"{uri}: the downloaded bytes do not match the object's crc32c "
                          "(changed or corrupted while downloading)")


def _gcs_crc32c(uri: str) -> str | None:
    """The base64 crc32c that GCS holds for an object; None for other filesystems."""
    if not uri.startswith("gs://"):
        return None
    return FileSystems.checksum(uri) or None


INPUT_CACHE_BYTES_ENV = "BEAM_SEG_INPUT_CACHE_BYTES"
_RECENTLY_USED_S = 120


def local_cache_dir() -> str:
    """Per-machine scratch space for copies of remote inputs (ffmpeg needs seekable files)."""
    path = os.path.join(tempfile.gettempdir(), f"beam_seg_inputs-{os.getuid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if info.st_uid != os.getuid() or info.st_mode & 0o077:  # someone else's, or open to others
        raise PermissionError(f"{path} is not a private directory of this user")
    return path


def local_copy(uri: str) -> str:
    """A local, seekable path for `uri`: the file itself when local, else a cached download.

    One download per worker machine per input version: the segments of a long video that
    land on the same worker reuse it, and an object replaced since (other size or update
    time) is fetched anew. Copies not used for a while are evicted, oldest first, once the
    cache outgrows its budget (`BEAM_SEG_INPUT_CACHE_BYTES`, default half the space the
    scratch disk has for it), so a worker that sees many videos does not fill its disk.
    """
    if is_local(uri):
        return _local_path(uri)
    matched = FileSystems.match([uri])[0].metadata_list
    if not matched:
        raise FileNotFoundError(f"no such file: {uri}")
    meta = matched[0]
    version = f"{uri}\n{meta.size_in_bytes}\n{meta.last_updated_in_seconds}"
    digest = hashlib.sha256(version.encode()).hexdigest()[:16]
    suffix = os.path.splitext(uri)[1][:8]
    cache = local_cache_dir()
    path = os.path.join(cache, digest + suffix)
    if os.path.exists(path):
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: not evicted
        return path
    download_file(uri, path)
    _evict_inputs(cache, keep=path)
    return path


def _evict_inputs(cache: str, keep: str) -> None:
    entries = []
    for entry in os.scandir(cache):
        if entry.name.startswith(".") or ".tmp-" in entry.name:
            continue  # a download in progress
        with contextlib.suppress(OSError):
            st = entry.stat()
            entries.append((st.st_mtime, st.st_size, entry.path))
    total = sum(size for _, size, _ in entries)
    budget = os.environ.get(INPUT_CACHE_BYTES_ENV)
    budget = int(budget) if budget else (shutil.disk_usage(cache).free + total) // 2
    now = time.time()
    for mtime, size, path in sorted(entries):
        if total <= budget:
            break
        if path == keep or now - mtime < _RECENTLY_USED_S:
            continue  # may be about to be opened by a decoder
        with contextlib.suppress(OSError):
            os.remove(path)  # a decoder that has it open keeps reading (POSIX)
            total -= size


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
