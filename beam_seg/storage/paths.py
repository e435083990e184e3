"""Paths of the file layer: what a local path is, atomic local writes, and the temporary
names a killed writer leaves (which a run sweeps from its own output folders only).

Pure path work and local files only: no Beam, so the after-run commands stay cheap to start.
`atomic_path` is the one place that turns a temporary file into an output.
"""

from __future__ import annotations

import contextlib
import glob
import os
import posixpath
import re
import shutil
import stat
import uuid
from collections.abc import Iterator

from beam_seg.storage.gate import write_gate


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



def link_base(out: str, html_path: str) -> str | None:
    """OUT as a relative URL from the page's folder, or None when no relative URL reaches it
    (a local page about a bucket, or the other way round)."""
    if is_local(out) != is_local(html_path):
        return None
    if is_local(out):
        rel = os.path.relpath(absolute(out), os.path.dirname(absolute(html_path)))
        return rel.replace(os.sep, "/")
    out_path, page_dir = out.rstrip("/"), posixpath.dirname(html_path)
    scheme_out, scheme_page = out_path.split("://", 1)[0], page_dir.split("://", 1)[0]
    if scheme_out != scheme_page:
        return None
    return posixpath.relpath(out_path.split("://", 1)[1], page_dir.split("://", 1)[1])

# What `atomic_path` (".name.tmp-1a2b3c4d") and `create_exclusive` ("name.tmp-1a2b3c4d") write
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


FILE_TYPES = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
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
    return next((what for test, what in FILE_TYPES if test(mode)), "not a regular file")


def is_dir(uri: str) -> bool:
    """A local directory; any remote prefix counts as one (object stores have no directories)."""
    return not is_local(uri) or os.path.isdir(local_path(uri))
