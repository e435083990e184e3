"""Known models (name -> URL, sha256, format, label set) and how a `--model` value becomes a local file.

Lookup order for a registry name: the offline mirror `BEAM_SEG_MODEL_DIR` (how tests,
the demo and air-gapped clusters run), then the download cache, then the URL. Every
file taken from the cache or a download is checked against its sha256 when one is known.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from beam_seg import storage

MODEL_DIR_ENV = "BEAM_SEG_MODEL_DIR"
CACHE_DIR_ENV = "BEAM_SEG_CACHE_DIR"
DEFAULT_MODEL = "cityscapes-edgetpu-slim"


class ModelNotFoundError(ValueError):
    """A --model value that is neither a registry name nor a readable model path."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    filename: str
    url: str
    sha256: str | None
    format: str  # "tflite" | "savedmodel" | "frozen_graph"
    labels: str  # a built-in label set name, or a label file name found beside the model
    description: str
    labels_url: str | None = None
    labels_sha256: str | None = None


_ZOO = "http://download.tensorflow.org/models/"
REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "cityscapes-edgetpu-slim",
            "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite",
            "https://github.com/google-coral/test_data/raw/master/"
            "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite",
            "322fe29945cb1693f426952f2a330ab67ea5678545ddee6f2548e0cfd0ca03e5",
            "tflite", "cityscapes",
            "EdgeTPU-DeepLab-slim, Cityscapes 19 classes, uint8 513x513 (default; 70.0% mIoU val)",
        ),
        ModelSpec(
            "pascal-mnv2-quant",
            "deeplabv3_mnv2_pascal_quant.tflite",
            "https://github.com/google-coral/test_data/raw/master/deeplabv3_mnv2_pascal_quant.tflite",
            "350af47fd346ea6d74b58833a351f583ba860e9806ec5bd292ff8d8f1f249398",
            "tflite", "pascal",
            "DeepLabv3 MobileNetV2, PASCAL VOC 21 classes, uint8 513x513",
        ),
        ModelSpec(
            "pascal-mnv2-float",
            "deeplabv3_257_mv_gpu.tflite",
            "https://storage.googleapis.com/download.tensorflow.org/models/tflite/gpu/"
            "deeplabv3_257_mv_gpu.tflite",
            "68a539782c2c6a72f8aac3724600124a85ed977162b44e84cbae5db717c933c6",
            "tflite", "pascal",
            "DeepLabv3 MobileNetV2, PASCAL VOC, float 257x257, logits output",
        ),
        ModelSpec(
            "ade20k-mnv2",
            "deeplabv3_mnv2_ade20k.tflite",
            "https://tfhub.dev/sayakpaul/lite-model/deeplabv3-mobilenetv2-ade20k/1/default/2"
            "?lite-format=tflite",
            "9476784566f88bf0bdc3169f0012fb7d08857b325811d8c1aaf5ada1c0d4e4f9",
            "tflite", "deeplabv3_mnv2_ade20k.labels.txt",
            "DeepLabv3 MobileNetV2, ADE20K 150 classes + other, float 513x513, logits output",
            labels_sha256="3601cbecdab401f50a61c1edf3403971b325ac263627eaaf9597c92f93f1a479",
        ),
        ModelSpec(
            "cityscapes-mnv3-small-zoo",
            "deeplab_mnv3_small_cityscapes_trainfine_2019_11_15.tar.gz",
            _ZOO + "deeplab_mnv3_small_cityscapes_trainfine_2019_11_15.tar.gz",
            None, "frozen_graph", "cityscapes",
            "DeepLab model zoo MobileNetV3-small, Cityscapes (TF1 frozen graph, any input size)",
        ),
        ModelSpec(
            "cityscapes-mnv2-zoo",
            "deeplabv3_mnv2_cityscapes_train_2018_02_05.tar.gz",
            _ZOO + "deeplabv3_mnv2_cityscapes_train_2018_02_05.tar.gz",
            None, "frozen_graph", "cityscapes",
            "DeepLab model zoo MobileNetV2, Cityscapes (TF1 frozen graph, any input size)",
        ),
        ModelSpec(
            "cityscapes-xception65-zoo",
            "deeplabv3_cityscapes_train_2018_02_06.tar.gz",
            _ZOO + "deeplabv3_cityscapes_train_2018_02_06.tar.gz",
            None, "frozen_graph", "cityscapes",
            "DeepLab model zoo Xception-65, Cityscapes (TF1 frozen graph, slow, accurate)",
        ),
    ]
}


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load: where it is on this machine and what it is."""

    name: str
    path: str
    format: str
    labels: str | None  # built-in label set name or a label-file path; None = unknown


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


def _fetch(uri: str, dest: str, sha256: str | None) -> str:
    """Download `uri` (http(s) or any Beam filesystem) to `dest`, verifying its checksum."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".download-")
    os.close(fd)
    try:
        if uri.startswith(("http://", "https://")):
            with urllib.request.urlopen(uri, timeout=60) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        else:
            storage.download_file(uri, tmp)
        if sha256 and sha256_of(tmp) != sha256:
            raise ModelNotFoundError(f"checksum mismatch for {uri}: expected sha256 {sha256}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def _find_or_fetch(filename: str, url: str | None, sha256: str | None) -> str:
    mirror = os.environ.get(MODEL_DIR_ENV)
    if mirror:
        candidate = storage.join(mirror, filename)
        if storage.exists(candidate):
            return candidate if storage.is_local(candidate) else _fetch(
                candidate, os.path.join(cache_dir(), filename), sha256)
    cached = os.path.join(cache_dir(), filename)
    if os.path.exists(cached) and (sha256 is None or sha256_of(cached) == sha256):
        return cached
    if url is None:
        raise ModelNotFoundError(f"{filename} is not in {MODEL_DIR_ENV} or the cache, and has no URL")
    try:
        return _fetch(url, cached, sha256)
    except OSError as exc:
        raise ModelNotFoundError(
            f"cannot download {url} ({exc}); put {filename} in a directory and set "
            f"{MODEL_DIR_ENV} to it") from None


def detect_format(path: str) -> str:
    lower = path.rstrip("/").lower()
    if lower.endswith(".tflite"):
        return "tflite"
    if lower.endswith((".tar.gz", ".tgz", ".pb")):
        return "frozen_graph"
    if storage.exists(storage.join(path.rstrip("/"), "saved_model.pb")):
        return "savedmodel"
    raise ModelNotFoundError(
        f"{path}: not a .tflite file, a SavedModel directory, a frozen graph (.pb) "
        "or a model-zoo .tar.gz")


def _local_model_copy(uri: str, fmt: str) -> str:
    """Remote models are fetched once per machine into the cache, keyed by their URI."""
    if storage.is_local(uri) and "://" not in uri:
        return os.path.abspath(uri)
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    base = posixpath.basename(uri.rstrip("/"))
    dest = os.path.join(cache_dir(), "by-uri", key, base)
    if os.path.exists(dest):
        return dest
    if fmt == "savedmodel":
        root = uri.rstrip("/") + "/"
        tmp_dir = tempfile.mkdtemp(dir=cache_dir(), prefix=".download-")
        for meta in FileSystems.match([root + "**"])[0].metadata_list:
            rel = meta.path[len(root):]
            local = os.path.join(tmp_dir, *rel.split("/"))
            os.makedirs(os.path.dirname(local), exist_ok=True)
            storage.download_file(meta.path, local)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(tmp_dir, dest)
        return dest
    return _fetch(uri, dest, None)


def resolve(model: str, labels: str | None = None) -> ResolvedModel:
    """Turn a --model value (registry name, path or URI) into a local file and its label set."""
    spec = REGISTRY.get(model)
    if spec is not None:
        path = _find_or_fetch(spec.filename, spec.url, spec.sha256)
        label_set = labels or spec.labels
        if labels is None and spec.labels not in ("cityscapes", "pascal"):
            label_set = _find_or_fetch(spec.labels, spec.labels_url, spec.labels_sha256)
        return ResolvedModel(spec.name, path, spec.format, label_set)
    if model.startswith(("http://", "https://")):
        fmt = detect_format(model.split("?")[0])
        key = hashlib.sha256(model.encode()).hexdigest()[:16]
        dest = os.path.join(cache_dir(), "by-uri", key, posixpath.basename(model.split("?")[0]))
        path = dest if os.path.exists(dest) else _fetch(model, dest, None)
    else:
        if not storage.exists(model) and not storage.exists(storage.join(model, "saved_model.pb")):
            known = ", ".join(sorted(REGISTRY))
            raise ModelNotFoundError(f"unknown model {model!r}: not a file, and not one of: {known}")
        fmt = detect_format(model)
        path = _local_model_copy(model, fmt)
    name = posixpath.basename(model.rstrip("/"))
    return ResolvedModel(name, path, fmt, labels)


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
