"""Input discovery and the run's plan: which inputs to do, which are done, which were
done with other options."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from beam_seg import naming, storage
from beam_seg.config import RunConfig
from beam_seg.job.exits import CannotWrite, UsageError
from beam_seg.pipeline.markers import source_changed
from beam_seg.storage import local_path


@dataclass
class Discovered:
    """What the input arguments expand to: media files, and files a folder scan passed over."""

    inputs: list[str]
    ignored: list[str] = field(default_factory=list)  # unsupported extension in a folder scan
    outside: list[str] = field(default_factory=list)  # symlinks in a folder scan leading out of it


@dataclass
class Plan:
    """What the launcher decided before the pipeline starts."""

    inputs: list[str]
    skipped: list[str] = field(default_factory=list)  # finished by an earlier run, same options
    ignored: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # finished, but from an older source: redone
    outside: list[str] = field(default_factory=list)  # symlinks not followed out of a scanned folder
    missing: dict[str, str] = field(default_factory=dict)  # done, but outputs gone (which): redone


def _has_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


OUTPUT_ROOT_MARKS = ("_lock.json", "_done")  # what only a beam-seg output root holds


def is_output_root(folder: str) -> bool:
    """A folder beam-seg writes into: never scanned for inputs (its overlays are not media
    to segment), whatever name it is reached by."""
    return any(os.path.exists(os.path.join(folder, mark)) for mark in OUTPUT_ROOT_MARKS)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _walk_media(folder: str, found: set[str], ignored: set[str], outside: set[str]) -> None:
    """Media files under a local folder. Symlinked folders inside it are followed once each
    (a link back up the tree cannot loop); a symlink that leads out of the folder is not
    followed (name it on the command line to include it), nor is any output root."""
    seen: set[tuple[int, int]] = set()
    top = os.path.realpath(folder)
    for root, dirs, files in os.walk(folder, followlinks=True):
        stat = os.stat(root)
        if (stat.st_dev, stat.st_ino) in seen or is_output_root(root):
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        for name in list(dirs):
            if not _inside(os.path.realpath(os.path.join(root, name)), top):
                outside.add(os.path.abspath(os.path.join(root, name)))
                dirs.remove(name)
        dirs.sort()
        for name in files:
            path = os.path.abspath(os.path.join(root, name))
            if not _inside(os.path.realpath(path), top):
                outside.add(path)
            else:
                (found if naming.kind_of(name) != "unsupported" else ignored).add(path)


def expand_inputs(patterns: list[str]) -> Discovered:
    """Files, directories and globs -> sorted, de-duplicated input URIs.

    Directories are searched recursively for known image/video extensions (the rest is
    counted as ignored); explicit files and glob matches are kept whatever their type, so a
    bad one becomes an error record rather than vanishing.
    """
    found: set[str] = set()
    ignored: set[str] = set()
    outside: set[str] = set()
    for pattern in patterns:
        if pattern.startswith("file://"):
            pattern = pattern[len("file://"):]
        if _has_glob(pattern) and not storage.exists(pattern):
            matches = storage.list_files(pattern)
            if not matches:
                raise UsageError(f"no files match {pattern!r}")
            found.update(storage.absolute(m) for m in matches)
        elif storage.is_local(pattern) and os.path.isdir(pattern):
            if naming.kind_of(pattern) != "unsupported":  # `x.jpg/` named: refused, not dropped
                found.add(storage.absolute(pattern).rstrip("/"))
            else:
                _walk_media(pattern, found, ignored, outside)
        elif storage.exists(pattern):
            found.add(storage.absolute(pattern))
        else:
            # A remote "directory" is a prefix: list it once and keep its images and videos.
            listed = [] if storage.is_local(pattern) else storage.list_files(pattern.rstrip("/") + "/**")
            if not listed:
                raise UsageError(f"input not found: {pattern}")
            for uri in listed:
                (found if naming.kind_of(uri) != "unsupported" else ignored).add(uri)
    if not found:
        raise UsageError(f"no images or videos found in {', '.join(patterns)} (searched for "
                         f"{' '.join(sorted(naming.IMAGE_EXTENSIONS | naming.VIDEO_EXTENSIONS))})")
    return Discovered(sorted(found), sorted(ignored), sorted(outside))


def read_done_marker(uri: str) -> dict | None:
    try:
        return json.loads(storage.read_bytes(uri))
    except (OSError, ValueError):  # unreadable: the input is simply not done
        return None


def describe_differences(before: dict | None, now: dict) -> str:
    """'model: a -> b, quality: None -> fast' for the options an earlier run used differently."""
    if not before:
        return "options not recorded (made by an older beam-seg)"
    diffs = [f"{name} {_shown(before, name)} -> {_shown(now, name)}" for name, value in now.items()
             if before.get(name) != value]
    return ", ".join(diffs) or "beam-seg version"


def _in_output_root(uri: str, root: str) -> bool:
    """Never our own outputs, by whatever path (a symlinked folder) they were reached."""
    if not storage.is_local(uri):
        return uri.startswith(root.rstrip("/") + "/")
    real_root = os.path.realpath(local_path(root)) if storage.is_local(root) else None
    return real_root is not None and _inside(os.path.realpath(local_path(uri)), real_root)


def _shown(options: dict, name: str) -> str:
    """An option's value for a person: 'default' where it was left unset, never None."""
    if name not in options:
        return "(not recorded)"
    return "default" if options[name] is None else repr(options[name])


def plan_run(patterns: list[str], cfg: RunConfig, discovered: Discovered | None = None) -> Plan:
    """Inputs to do now. Inputs an earlier run finished with the same options are skipped;
    finished with other options, the run refuses (exit 2) unless --overwrite redoes them,
    so no output is ever silently stale."""
    discovered = discovered or expand_inputs(patterns)
    inputs = [u for u in discovered.inputs if not _in_output_root(u, cfg.layout.root)]
    if not inputs:
        raise UsageError(f"every input is inside the output root {cfg.layout.root}")
    if cfg.overwrite:
        return Plan(inputs, [], discovered.ignored, outside=discovered.outside)
    done = {os.path.basename(p)[: -len(".json")]: p for p in storage.list_files(cfg.layout.done_glob())}
    present = _outputs_present(cfg) if done else set()
    todo, skipped, stale, changed, missing = [], [], [], [], {}
    for uri in inputs:
        marker_uri = done.get(naming.input_id(uri))
        marker = read_done_marker(marker_uri) if marker_uri else None
        if marker is None:
            todo.append(uri)
        elif source_changed(marker, uri):
            todo.append(uri)
            changed.append(uri)
        elif marker.get("fingerprint") == cfg.fingerprint:
            gone = _outputs_gone(uri, cfg, present)
            if gone:
                todo.append(uri)
                missing[uri] = gone
            else:
                skipped.append(uri)
        else:
            stale.append((uri, describe_differences(marker.get("options"), cfg.output_options())))
    if stale:
        uri, why = stale[0]
        more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
        raise UsageError(f"{cfg.layout.root} holds {naming.input_id(uri)}{more} made with other "
                         f"options ({why}); add --overwrite to redo them, or choose another --output")
    return Plan(todo, skipped, discovered.ignored, changed, discovered.outside, missing)


def _outputs_present(cfg: RunConfig) -> set[str]:
    """Every input's first coverage file and every video, in two listings (cheap on any store)."""
    root = storage.literal(cfg.layout.root)
    return {*storage.list_files(storage.join(root, "coverage", "*", "segment-00000.parquet")),
            *storage.list_files(storage.join(root, "videos", "*.mp4"))}


def _outputs_gone(uri: str, cfg: RunConfig, present: set[str]) -> str | None:
    """What a done input lacks of its outputs (deleted since by hand), or None."""
    iid = naming.input_id(uri)
    needed = [cfg.layout.coverage(iid, 0)]
    if naming.kind_of(uri) == "video":
        needed.append(cfg.layout.video(iid))
    gone = [cfg.layout.relative(u) for u in needed if u not in present]
    return ", ".join(gone) or None


def check_output_writable(output: str) -> None:
    in_the_way = _file_in_the_way(output)
    if in_the_way:
        raise UsageError(f"--output {output}: {in_the_way} is a file, not a folder")
    try:
        storage.probe_write(storage.absolute(output))
    except Exception as exc:  # any filesystem error means the same thing to the user
        reason = storage.outage_reason(exc)
        if reason is not None:  # full, read-only or unreachable: not a usage error
            raise CannotWrite(f"cannot write to {output}: {reason}") from None
        raise UsageError(f"output {output} is not writable: {exc}") from None


def _file_in_the_way(output: str) -> str | None:
    """The local file at `output`, or at one of its parents, where a folder must be."""
    if not storage.is_local(output):
        return None
    path = os.path.abspath(output)
    while path != os.path.dirname(path):
        if os.path.isfile(path):
            return path
        path = os.path.dirname(path)
    return None
