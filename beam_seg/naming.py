"""Deterministic, collision-free and confined output names derived from input URIs.

An input's id is its sanitised file stem plus a short hash of its full URI: two
`clip.mp4` files in different folders get different ids, the same input always gets
the same id, and the id holds only `[A-Za-z0-9._-]` so no output can escape the root.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import unicodedata

from beam_seg import storage

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})

_MAX_STEM = 60


def extension(uri: str) -> str:
    return posixpath.splitext(uri.rstrip("/"))[1].lower()


def kind_of(uri: str) -> str:
    """'image', 'video' or 'unsupported', judged by extension (content is checked later)."""
    ext = extension(uri)
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return "unsupported"


def safe_component(text: str) -> str:
    """One path component with only ASCII letters, digits, '.', '_' and '-'; never '.' or '..'."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", folded).strip("._-")
    return cleaned[:_MAX_STEM] or "input"


def input_id(uri: str) -> str:
    """`<stem>-<hash8>`: readable, stable across runs, distinct for distinct URIs."""
    base = posixpath.basename(uri.replace("\\", "/").rstrip("/"))
    stem = posixpath.splitext(base)[0]
    digest = hashlib.sha1(storage.absolute(uri).encode("utf-8")).hexdigest()[:8]
    return f"{safe_component(stem)}-{digest}"


def frame_name(frame_index: int) -> str:
    return f"{frame_index:06d}"


class OutputLayout:
    """Where every output of a run lives, relative to the output root."""

    def __init__(self, root: str):
        self.root = storage.absolute(root).rstrip("/") or "/"

    def _under(self, *parts: str) -> str:
        for part in parts:
            if part in ("", ".", "..") or "/" in part or "\\" in part:
                raise ValueError(f"unsafe output path component: {part!r}")
        return storage.join(self.root, *parts)

    def label_png(self, iid: str, frame_index: int) -> str:
        return self._under("labels", iid, frame_name(frame_index) + ".png")

    def overlay(self, iid: str, frame_index: int, fmt: str) -> str:
        return self._under("overlays", iid, frame_name(frame_index) + "." + fmt)

    def coverage(self, iid: str, segment: int) -> str:
        return self._under("coverage", iid, f"segment-{segment:05d}.parquet")

    def coverage_files(self, iid: str) -> str:
        """A glob of the input's coverage files (the root escaped: it is a literal path)."""
        self._under("coverage", iid)
        return storage.join(storage.literal(self.root), "coverage", iid, "*.parquet")

    def coverage_glob(self) -> str:
        """For display only (not escaped); matching goes through `coverage_files`."""
        return storage.join(self.root, "coverage", "*", "*.parquet")

    def events(self, iid: str) -> str:
        return self._under("events", iid + ".parquet")

    def segment_video_dir(self, iid: str) -> str:
        return self._under("_work", iid)

    def segment_video(self, iid: str, segment: int) -> str:
        return self._under("_work", iid, f"segment-{segment:05d}.mp4")

    def segment_marker(self, iid: str, segment: int) -> str:
        return self._under("_work", iid, f"segment-{segment:05d}.json")

    def video(self, iid: str) -> str:
        return self._under("videos", iid + ".mp4")

    def done_marker(self, iid: str) -> str:
        return self._under("_done", iid + ".json")

    def done_glob(self) -> str:
        """A glob of every done marker; the root escaped, so it matches no other folder."""
        return storage.join(storage.literal(self.root), "_done", "*.json")

    def segment_markers_glob(self) -> str:
        """Every finished segment's marker of the videos not finished yet."""
        return storage.join(storage.literal(self.root), "_work", "*", "segment-*.json")

    def errors_glob(self) -> str:
        return storage.join(storage.literal(self.root), "errors", "*.jsonl")

    def relative(self, uri: str) -> str:
        """The path of an output relative to the root, as stored in the coverage table."""
        prefix = self.root.rstrip("/") + "/"
        if not uri.startswith(prefix):
            raise ValueError(f"{uri!r} is not under {self.root!r}")
        return uri[len(prefix) :]
