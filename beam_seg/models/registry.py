"""How a `--model` value becomes a local file: a registry name (see `catalog.py`), a path or a URI.

Lookup order for a registry name: the offline mirror `BEAM_SEG_MODEL_DIR` (how tests,
the demo and air-gapped clusters run; a local directory, or a gs:// prefix whose files are
fetched once per machine into the cache), then the download cache, then the URL. Every
file taken from the cache or a download is checked against its sha256 when one is known.
A model given by URI (gs://, s3://, http(s)://) is likewise fetched once per machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
import tarfile
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from beam_seg import storage
from beam_seg.models.catalog import REGISTRY
from beam_seg.storage import atomic_path

MODEL_DIR_ENV = "BEAM_SEG_MODEL_DIR"
CACHE_DIR_ENV = "BEAM_SEG_CACHE_DIR"


class ModelNotFoundError(ValueError):
    """A --model value that is neither a registry name nor a readable model path."""


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load: where it is on this machine and what it is."""

    name: str
    path: str
    format: str
    labels: str | None  # built-in label set name or a label-file path; None = unknown
    io: dict | None = None  # an ONNX model's tensors: the registry's, or its sidecar file's
    exposure_mean: float | None = None  # the registry's (`ModelSpec.exposure_mean`)


def cache_dir() -> str:
    default = os.path.join(os.path.expanduser("~"), ".cache", "beam_seg", "models")
    path = os.environ.get(CACHE_DIR_ENV) or default
    os.makedirs(path, exist_ok=True)
    return path


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_digests: dict[tuple, str] = {}
_digests_lock = threading.Lock()


def _cached_sha256(path: str) -> str:
    """sha256 of a local model file, hashed once per process for each version of the file.

    `resolve` runs in the launcher and in every DoFn's setup; re-hashing a large model
    each time would cost seconds for nothing.
    """
    st = os.stat(path)
    key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _digests_lock:
        digest = _digests.get(key)
    if digest is None:
        digest = sha256_of(path)
        with _digests_lock:
            _digests[key] = digest
    return digest


def _usable(cached: str, sha256: str | None) -> bool:
    return os.path.exists(cached) and (sha256 is None or _cached_sha256(cached) == sha256)


_thread_lock = threading.Lock()


@contextlib.contextmanager
def _exclusive(dest: str) -> Iterator[None]:
    """Serialise fetching `dest` between the threads and processes of this machine.

    Whoever comes first downloads; the others wait, then find the finished file. So a
    worker with several SDK processes and DoFn threads fetches a remote model once.
    """
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    try:
        import fcntl
    except ImportError:  # no flock (Windows): at least the threads of a process take turns
        with _thread_lock:
            yield
        return
    with open(dest + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fetch(uri: str, dest: str, sha256: str | None) -> str:
    """Download `uri` (http(s) or any Beam filesystem) to `dest`, verifying its checksum.

    With no sha256 known, a gs:// object is still checked against the crc32c that GCS
    keeps for it (`storage.download_file`).
    """
    with atomic_path(dest) as tmp:
        if uri.startswith(("http://", "https://")):
            with urllib.request.urlopen(uri, timeout=60) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        else:
            storage.download_file(uri, tmp)
        if sha256 and sha256_of(tmp) != sha256:
            raise ModelNotFoundError(f"checksum mismatch for {uri}: expected sha256 {sha256}")
    return dest


def _find_or_fetch(filename: str, url: str | None, sha256: str | None,
                   how_to_get: str | None = None) -> str:
    mirror = os.environ.get(MODEL_DIR_ENV)
    candidate = storage.join(mirror, filename) if mirror else None
    if candidate and storage.is_local(candidate) and storage.exists(candidate):
        return candidate  # the cache is not even created: a read-only machine works
    cached = os.path.join(cache_dir(), filename)
    if candidate and not storage.is_local(candidate):
        # A remote mirror (gs://…): fetched once into the cache, then reused.
        with _exclusive(cached):
            if _usable(cached, sha256):
                return cached
            if storage.exists(candidate):
                return _fetch(candidate, cached, sha256)
    with _exclusive(cached):
        if _usable(cached, sha256):
            return cached
        if url is None:
            raise ModelNotFoundError(f"{filename} is not in {MODEL_DIR_ENV} or the cache: "
                                     f"{how_to_get or 'and it has no URL'}")
        try:
            return _fetch(url, cached, sha256)
        except OSError as exc:
            raise ModelNotFoundError(
                f"cannot download {url} ({exc}); put {filename} in a directory and set "
                f"{MODEL_DIR_ENV} to it") from None


def _is_url(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def detect_format(path: str) -> str:
    lower = path.rstrip("/").lower()
    if lower.endswith(".tflite"):
        return "tflite"
    if lower.endswith((".tar.gz", ".tgz", ".pb")):
        return "frozen_graph"
    if lower.endswith(".onnx"):
        return "onnx"
    if not _is_url(path) and storage.exists(storage.join(path.rstrip("/"), "saved_model.pb")):
        return "savedmodel"
    raise ModelNotFoundError(
        f"{path}: not a .tflite or .onnx file, a SavedModel directory, a frozen graph (.pb) "
        "or a model-zoo .tar.gz")


def _remote_files(uri: str, fmt: str) -> list:
    """The FileMetadata of a remote model: the file, or every file of a SavedModel directory."""
    if fmt == "savedmodel":
        root = uri.rstrip("/") + "/"
        # Skip "folder" placeholder objects (names ending in '/') that some GCS tools create.
        return [m for m in FileSystems.match([root + "**"])[0].metadata_list
                if not m.path.endswith("/")]
    return FileSystems.match([uri])[0].metadata_list


def _local_model_copy(uri: str, fmt: str) -> str:
    """A remote model is fetched once per machine into the cache and reused from there.

    The cache key is the URI plus the size and update time of each of its files, so a
    model replaced at the same URI is fetched again rather than served stale.
    """
    if storage.is_local(uri):
        return os.path.abspath(storage.local_copy(uri))
    uri = uri.rstrip("/")
    files = _remote_files(uri, fmt)
    if not files:
        raise ModelNotFoundError(f"{uri}: no such model")
    fingerprint = "\n".join([uri, *sorted(f"{m.path} {m.size_in_bytes} {m.last_updated_in_seconds}"
                                           for m in files)])
    key = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    dest = os.path.join(cache_dir(), "by-uri", key, posixpath.basename(uri))
    with _exclusive(dest):
        if os.path.exists(dest):
            return dest
        if fmt != "savedmodel":
            return _fetch(uri, dest, None)
        root = uri + "/"
        with atomic_path(dest) as tmp_dir:
            for meta in files:
                parts = meta.path[len(root):].split("/")
                if any(part in ("", ".", "..") for part in parts):
                    raise ModelNotFoundError(f"refusing model file with an unsafe name: {meta.path}")
                local = os.path.join(tmp_dir, *parts)
                os.makedirs(os.path.dirname(local), exist_ok=True)
                storage.download_file(meta.path, local)
    return dest


def resolve(model: str, labels: str | None = None) -> ResolvedModel:
    """Turn a --model value (registry name, path or URI) into a local file and its label set.

    A remote model (gs://, s3://, http(s)://) is downloaded once per machine into the
    cache (`BEAM_SEG_CACHE_DIR`); every later resolve on that machine, from any thread or
    process, reuses the copy.

    Args:
        model: a `REGISTRY` name, or a model file's path or URI.
        labels: its label set when it is not in the registry (a built-in name or a file).

    Returns:
        A `ResolvedModel`: name, local path, format and label set.

    Example:
        >>> resolve("cityscapes-edgetpu-slim").labels                # doctest: +SKIP
        'cityscapes'
    """
    spec = REGISTRY.get(model)
    if spec is not None:
        path = _find_or_fetch(spec.filename, spec.url, spec.sha256, spec.how_to_get)
        label_set = labels or spec.labels
        if labels is None and spec.labels not in ("cityscapes", "pascal"):
            label_set = _find_or_fetch(spec.labels, spec.labels_url, spec.labels_sha256)
        return ResolvedModel(spec.name, path, spec.format, label_set, spec.io, spec.exposure_mean)
    if _is_url(model):
        fmt = detect_format(model.split("?")[0])
        key = hashlib.sha256(model.encode()).hexdigest()[:16]
        dest = os.path.join(cache_dir(), "by-uri", key, posixpath.basename(model.split("?")[0]))
        with _exclusive(dest):
            path = dest if os.path.exists(dest) else _fetch(model, dest, None)
    else:
        if not storage.exists(model) and not storage.exists(storage.join(model, "saved_model.pb")):
            known = ", ".join(sorted(REGISTRY))
            raise ModelNotFoundError(f"unknown model {model!r}: not a file, and not one of: {known}")
        fmt = detect_format(model)
        path = _local_model_copy(model, fmt)
    name = posixpath.basename(model.rstrip("/"))
    return ResolvedModel(name, path, fmt, labels, read_sidecar(model) if fmt == "onnx" else None,
                         _exposure_of_same_file(path))


def _exposure_of_same_file(path: str) -> float | None:
    """A model file given by path or URI that is a registry model's published file (the same
    sha256) is that model, and its frames are darkened as the registry's are
    (`ModelSpec.exposure_mean`); any other file's are not. Hashed once per version of the
    file (`_cached_sha256`): every DoFn's setup resolves the model again."""
    if not os.path.isfile(path):
        return None
    twins = {spec.sha256: spec.exposure_mean for spec in REGISTRY.values() if spec.sha256}
    return twins.get(_cached_sha256(path))


SIDECAR_SUFFIX = ".json"


def read_sidecar(model: str) -> dict | None:
    """The input/output description beside a user's ONNX model (`model.onnx.json`), if any."""
    import json

    uri = model.split("?")[0] + SIDECAR_SUFFIX
    try:
        if _is_url(model):
            with urllib.request.urlopen(uri, timeout=60) as response:
                text = response.read()
        elif storage.exists(uri):
            text = storage.read_bytes(uri)
        else:
            return None
    except OSError:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ModelNotFoundError(f"{uri}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ModelNotFoundError(f"{uri}: expected a JSON object with 'input' and 'output'")
    return value


def extract_frozen_graph(path: str) -> bytes:
    """The GraphDef bytes of a frozen graph, from a .pb or a DeepLab model-zoo tarball."""
    if not path.lower().endswith((".tar.gz", ".tgz")):
        with open(path, "rb") as f:
            return f.read()
    with tarfile.open(path, "r:gz") as tar:
        members = [m for m in tar.getmembers()
                   if m.isfile() and m.name.endswith("frozen_inference_graph.pb")]
        if not members:
            raise ModelNotFoundError(f"{path}: no frozen_inference_graph.pb inside")
        return tar.extractfile(members[0]).read()
