"""The file operations, each defined once, for local paths, gs:// and s3:// alike.

Local paths are served with plain OS calls; every other URI goes through Beam's FileSystems,
imported only when a remote URI is used, so that the after-run commands (`beam-seg report`,
`eval`, `events`) never pay for importing Beam. Every call goes through `limits.bounded`: a
remote one within the run's deadline, and a local one that fails for want of space or a
read-only disk marks the store as gone, like a remote outage.

Writes are atomic: local files are written to a temporary sibling and renamed
(`paths.atomic_path`); object stores only make an object visible when its upload completes,
so a single upload is already atomic there, as long as a write that fails midway is
cancelled rather than completed (`open_for_write` does that). A retried or killed step
therefore never leaves a half-written output behind. Remote inputs that need a local file
(ffmpeg seeks) are copied once per machine and checked against GCS's crc32c (`local_copy`).
"""

from __future__ import annotations

import base64
import contextlib
import glob
import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from beam_seg.storage.gate import write_gate
from beam_seg.storage.limits import WRITE_PROBE, bounded, note_local_failure
from beam_seg.storage.paths import FILE_TYPES, atomic_path, is_local, join, literal, local_path

_CHUNK = 8 * 1024 * 1024
T = TypeVar("T")


def _fs():
    """Beam's FileSystems, for remote URIs only (importing Beam costs seconds)."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _UNCOMPRESSED():
    from apache_beam.io.filesystem import CompressionTypes

    return CompressionTypes.UNCOMPRESSED


def _bounded(uri: str, fn: Callable[..., T], *args, streaming: bool = False) -> T:
    return bounded(uri, is_local(uri), fn, *args, streaming=streaming)


def exists(uri: str) -> bool:
    if is_local(uri):
        return os.path.exists(local_path(uri))
    return _bounded(uri, _fs().exists, uri)


def read_bytes(uri: str) -> bytes:
    if is_local(uri):
        with open_for_read(uri) as f:
            return f.read()

    def read() -> bytes:  # one deadline for the open and the read (no nested deadline)
        with _fs().open(uri, compression_type=_UNCOMPRESSED()) as f:
            return f.read()
    return _bounded(uri, read)


def open_for_read(uri: str):
    """A binary stream, read as it is consumed (Pillow reads an image's header first, so a
    huge file is refused before it is read whole). A local file is opened without blocking
    and refused unless it is a regular file by then (a FIFO or a device put in its place
    since the plan would block or never end)."""
    if not is_local(uri):
        return _bounded(uri, lambda: _fs().open(uri, compression_type=_UNCOMPRESSED()))
    fd = os.open(local_path(uri), os.O_RDONLY | os.O_NONBLOCK)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ValueError(f"not a regular file: {next((w for t, w in FILE_TYPES if t(mode)), '?')}")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file atomically (local: `atomic_path`; object stores: one upload)."""
    def write() -> None:
        with open_for_write(uri) as f:
            f.write(data)
    _bounded(uri, write)


def download_file(uri: str, path: str) -> None:
    """Copy any URI to a local file atomically (a gs:// object is checked, see below)."""
    if is_local(uri):
        with atomic_path(path) as tmp:
            shutil.copyfile(local_path(uri), tmp)
        return
    _bounded(uri, _download_file, uri, path, streaming=True)


def delete(uri: str) -> None:
    """Remove one file if it exists, by its exact name (Beam's local delete globs)."""
    if is_local(uri):
        with write_gate(), contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.remove(local_path(uri))
        return
    if exists(uri):
        with write_gate():
            _bounded(uri, _fs().delete, [uri])


def list_files(pattern: str) -> list[str]:
    """Paths matching a glob, sorted; an empty list when nothing matches. Locally `*` stays
    within one path segment, `**` spans folders, and hidden files are left out."""
    if is_local(pattern):
        return sorted(glob.glob(local_path(pattern), recursive=True))
    result = _bounded(pattern, _fs().match, [pattern])[0]
    return sorted(m.path for m in result.metadata_list)




@contextlib.contextmanager
def open_for_write(uri: str) -> Iterator:
    """A writable binary stream whose content appears at `uri` only if the block succeeds."""
    if is_local(uri):
        try:
            with atomic_path(uri) as tmp, open(tmp, "wb") as f:
                yield f
        except OSError as exc:
            note_local_failure(uri, exc)
            raise
    else:
        with write_gate():
            f = _fs().create(uri, mime_type="application/octet-stream",
                                   compression_type=_UNCOMPRESSED())
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
        _fs().delete([uri])


def upload_file(path: str, uri: str) -> None:
    """Copy a finished local file to `uri` atomically."""
    def upload() -> None:
        with open(path, "rb") as src, open_for_write(uri) as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    _bounded(uri, upload, streaming=True)


def _download_file(uri: str, path: str) -> None:
    """Copy `uri` to a local file atomically; a gs:// object is checked against its crc32c.

    Beam reads GCS objects in ranges, which the client does not checksum, so the whole
    download is compared with the checksum GCS keeps for every object.
    """
    expected = _gcs_crc32c(uri)
    crc = None
    if expected is not None:
        import google_crc32c  # a dependency of google-cloud-storage, so of apache-beam[gcp]

        crc = google_crc32c.Checksum()
    with atomic_path(path) as tmp:
        with _fs().open(uri, compression_type=_UNCOMPRESSED()) as src, \
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
    return _bounded(uri, _fs().checksum, uri) or None


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
        return local_path(uri)
    matched = _bounded(uri, _fs().match, [literal(uri)])[0].metadata_list
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


def delete_tree(uri: str) -> None:
    """Remove a directory of intermediate files; missing is fine."""
    if is_local(uri):
        with write_gate():
            shutil.rmtree(local_path(uri), ignore_errors=True)
        return
    prefix = literal(uri.rstrip("/")) + "/"
    matched = _bounded(uri, _fs().match, [prefix + "**"])[0].metadata_list
    if matched:
        with write_gate():
            _bounded(uri, _fs().delete, [m.path for m in matched])


def source_identity(uri: str) -> dict:
    """What says an input is still the file an earlier run read: size, mtime, inode locally,
    generation and crc32c on GCS (a re-upload of the same bytes is a new generation),
    size and update time elsewhere. Markers record it; a change redoes the input."""
    if is_local(uri):
        st = os.stat(local_path(uri))  # the inode: `mv other clip.mp4` with an old mtime
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
    if uri.startswith("gs://"):
        blob = _bounded(uri, _gcs_blob, uri)
        if blob is None:
            raise FileNotFoundError(f"no such object: {uri}")
        return {"generation": int(blob.generation), "crc32c": blob.crc32c}
    matched = _bounded(uri, _fs().match, [literal(uri)])[0].metadata_list
    if not matched:
        raise FileNotFoundError(f"no such file: {uri}")
    return {"size": matched[0].size_in_bytes, "updated": matched[0].last_updated_in_seconds}


def _gcs_ref(uri: str):
    """A google-cloud-storage Blob handle through Beam's client (nothing fetched yet)."""
    from apache_beam.io.gcp import gcsio
    bucket, name = gcsio.parse_gcs_path(uri)
    return gcsio.GcsIO().client.bucket(bucket).blob(name)


def _gcs_blob(uri: str):
    ref = _gcs_ref(uri)
    return ref.bucket.get_blob(ref.name)


def probe_write(root: str) -> None:
    """Write a small file into `root` and remove it: raises what a real write there would.
    The launcher asks before a run starts, and again to say why a run could not write."""
    probe = join(root, WRITE_PROBE)
    write_bytes(probe, b"ok")
    delete(probe)
