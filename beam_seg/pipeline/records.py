"""The small records that flow between pipeline steps, and the pure functions that make them.

Pixels only travel inside one fused stage (decode -> inference -> write); what crosses the
one shuffle after it is one of these per unit (UnitStatus, UnitWritten) and ErrorRecords.
"""

from __future__ import annotations

import dataclasses
import json
import traceback
from dataclasses import dataclass, field

import numpy as np

from beam_seg import naming
from beam_seg.media.video import Segment, VideoInfo


@dataclass(frozen=True)
class WorkUnit:
    """One independently processable piece of input: an image, or a frame range of a video."""

    source_uri: str
    input_id: str
    kind: str  # "image" | "video"
    segment: Segment | None = None
    segment_count: int = 1
    info: VideoInfo | None = None  # without per-frame timestamps, to stay small
    context: Segment | None = None  # the wider range decoded for temporal fusion's neighbours
    source_version: str = ""  # JSON of storage.source_identity at planning: markers record it

    @property
    def key(self) -> tuple[str, int]:
        return self.input_id, self.segment.index if self.segment else 0

    @property
    def source(self) -> dict:
        return json.loads(self.source_version) if self.source_version else {}


@dataclass(frozen=True)
class FrameKey:
    """Identifies a frame through RunInference (keyed inference keeps outputs joined to inputs)."""

    unit: WorkUnit
    frame_index: int
    timestamp_s: float
    context: bool = False  # decoded only as a neighbour for temporal fusion, never written


@dataclass(frozen=True)
class FrameRecord:
    """What is left of a frame once its files are written: a few hundred bytes, no pixels.

    The unit's writer keeps these until the unit's last frame, then writes them as the
    unit's coverage file; they never cross a shuffle.
    """

    frame_index: int
    timestamp_s: float
    width: int
    height: int
    class_counts: np.ndarray  # pixels per class id, then the rest (ignore)
    regions: dict = field(default_factory=dict)  # roi_/n_/largest_/lowest_ columns
    confidence: float | None = None  # mean top-class probability (models with scores)
    flicker: float | None = None  # share of labels changed beyond the motion (fused videos)


@dataclass(frozen=True)
class UnitStatus:
    """How decoding a unit went: frames planned vs frames actually decoded."""

    unit: WorkUnit
    planned: int
    decoded: int
    error: str | None = None
    missing_from: int | None = None  # first source frame that could not be decoded
    frames_read: int = 0  # every frame the decoder gave, kept by --every-nth-frame or not
    context_read: int = 0  # frames outside the unit decoded as temporal fusion's neighbours


@dataclass(frozen=True)
class UnitWritten:
    """A unit whose frames are through the write step: how many frames have all their
    outputs, and for a video the segment mp4 when its encoder succeeded. `resumed` marks a
    segment that an unfinished earlier run had already completed."""

    unit: WorkUnit
    frames: int
    segment_video: str | None = None
    resumed: bool = False
    finished: dict | None = None  # a still finished (and marked done) as soon as it was written


@dataclass(frozen=True)
class ErrorRecord:
    """A dead-letter record: which input, which step, why, and for videos which frames."""

    source_uri: str
    input_id: str
    step: str
    reason: str
    frame_start: int | None = None
    frame_stop: int | None = None
    details: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, sort_keys=True)


def planned_frame_indices(segment: Segment, every_nth_frame: int) -> list[int]:
    """The frames of a segment that are processed under --every-nth-frame N (0, N, 2N, …)."""
    return [i for i in range(segment.start, segment.stop) if i % every_nth_frame == 0]


def _find_unit(obj, depth: int = 3) -> WorkUnit | None:
    """The WorkUnit inside whatever element a step failed on (keys, groups, results)."""
    if isinstance(obj, WorkUnit):
        return obj
    if isinstance(obj, FrameKey | UnitStatus | UnitWritten):
        return obj.unit
    if depth > 0:
        children = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, tuple | list) else ()
        for child in children:
            found = _find_unit(child, depth - 1)
            if found is not None:
                return found
    return None


def _uri_and_id(element) -> tuple[str, str]:
    unit = _find_unit(element)
    if unit is not None:
        return unit.source_uri, unit.input_id
    if isinstance(element, str):
        return element, naming.input_id(element)
    return repr(element)[:200], "unknown"


def error_from_exception(step: str, element, exc_info) -> ErrorRecord:
    """Turn a with_exception_handling dead letter `(element, (type, value, tb))` into a record."""
    uri, iid = _uri_and_id(element)
    exc_type, exc_value, tb = exc_info
    unit = _find_unit(element)
    if isinstance(element, tuple) and element and isinstance(element[0], FrameKey):
        start = element[0].frame_index
        stop = start + 1
    elif isinstance(unit, WorkUnit) and unit.segment:
        start, stop = unit.segment.start, unit.segment.stop
    else:
        start = stop = None
    name = getattr(exc_type, "__name__", str(exc_type))
    lines = tb if isinstance(tb, list) else traceback.format_tb(tb) if tb else []
    # Beam passes repr(exception); the formatted traceback's last line reads "Type: message".
    message = str(exc_value)
    if lines and ": " in lines[-1]:
        message = lines[-1].strip().split(": ", 1)[1]
    return ErrorRecord(uri, iid, step, f"{name}: {message}", start, stop, list(lines)[-3:])
