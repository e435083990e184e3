"""The markers a re-run trusts: a finished video segment's, and a finished input's.

A marker is always the last file written for what it vouches for, and is deleted before
that work is redone, so a marker never stands for files another run is rewriting.
"""

from __future__ import annotations

import json
import logging

from apache_beam.metrics import Metrics

from beam_seg import naming, storage
from beam_seg.naming import OutputLayout
from beam_seg.pipeline.records import UnitWritten, WorkUnit

log = logging.getLogger("beam_seg")


def _segment_identity(unit: WorkUnit, fingerprint: str) -> dict:
    seg = unit.segment
    return {"fingerprint": fingerprint, "start": seg.start, "count": seg.count,
            "segments": unit.segment_count, "source": unit.source}


def write_segment_marker(unit: WorkUnit, frames: int, layout: OutputLayout, fingerprint: str) -> None:
    marker = {**_segment_identity(unit, fingerprint), "frames": frames}
    storage.write_bytes(layout.segment_marker(unit.input_id, unit.segment.index),
                        json.dumps(marker, sort_keys=True).encode())


def delete_segment_marker(unit: WorkUnit, layout: OutputLayout) -> None:
    storage.delete(layout.segment_marker(unit.input_id, unit.segment.index))


def resume_segment(unit: WorkUnit, layout: OutputLayout, fingerprint: str) -> UnitWritten | None:
    """This video segment's result from an earlier run that did not finish its input, or
    None when the segment has to be done (again).

    Reused only when the earlier run had the same options (fingerprint), the same source
    (size, mtime and inode, or GCS generation and crc32c) and the same cut of the video, its
    marker says every planned frame was written without error, and its mp4 and coverage
    file are still there. (--overwrite never asks.)
    """
    if unit.kind != "video":
        return None
    iid, index = unit.input_id, unit.segment.index
    marker_uri = layout.segment_marker(iid, index)
    if not storage.exists(marker_uri):
        return None
    try:
        marker = json.loads(storage.read_bytes(marker_uri))
    except ValueError:  # unreadable: redo the segment
        return None
    if marker.get("source") != unit.source and unit.source:
        log.info("%s: segment %d was made from an older version of %s; redone", iid, index,
                 unit.source_uri)
        Metrics.counter("beam_seg", "segments_source_changed").inc()
        return None
    if any(marker.get(k) != v for k, v in _segment_identity(unit, fingerprint).items()):
        return None
    video_uri = layout.segment_video(iid, index)
    if not (storage.exists(video_uri) and storage.exists(layout.coverage(iid, index))):
        return None
    return UnitWritten(unit, int(marker["frames"]), video_uri, resumed=True)


def write_done_marker(input_id: str, summary: dict, layout: OutputLayout, fingerprint: str,
                      options: dict, source: dict | None = None) -> None:
    """The input is finished: what it made, the options it was made with (a re-run with
    other options must not take these outputs for its own) and the source's identity (a
    re-run redoes an input whose source has changed since)."""
    marker = {**summary, "fingerprint": fingerprint, "options": options}
    if source is not None:
        marker["source"] = source
    storage.write_bytes(layout.done_marker(input_id),
                        json.dumps(marker, sort_keys=True, default=str).encode())


def delete_done_marker(input_id: str, layout: OutputLayout) -> None:
    storage.delete(layout.done_marker(input_id))


def clear_done_markers(uris: list[str], layout: OutputLayout) -> None:
    """--overwrite: the inputs about to be redone are no longer done, before any of their
    work starts; a run that dies midway then leaves them to be redone, not skipped with a
    mix of old and new files."""
    done = set(storage.list_files(layout.done_glob()))
    for uri in uris:
        marker = layout.done_marker(naming.input_id(uri))
        if marker in done:
            storage.delete(marker)


def source_changed(marker: dict, uri: str) -> bool:
    """A done input whose source is no longer the file it was made from (markers made
    before sources were recorded count as unchanged)."""
    return "source" in marker and marker["source"] != storage.source_identity(uri)
