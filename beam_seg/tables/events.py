"""Events: the time intervals in which a class is present in a video, from its coverage table.

Presence has hysteresis, so that a class hovering around one threshold does not flicker
in and out: an event starts at a frame whose coverage (`frac_<class>`) is above `enter`,
and lasts while the coverage stays above the lower `exit`; the first frame at or below
`exit` ends it. Events shorter than `min_duration_s` (from the first frame's timestamp to
the last's) are dropped. The frames are the input's rows of the coverage table in frame
order (with --every-nth-frame N, every N-th frame), so an event is made only of frames the
table holds, and deriving it again from the same table gives the same rows.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from beam_seg import storage
from beam_seg.tables.coverage import FRACTION_PREFIX, IGNORE_COLUMN
from beam_seg.tables.regions import COUNT_PREFIX

DEFAULT_ENTER = 0.005
DEFAULT_EXIT = 0.002
DEFAULT_MIN_DURATION_S = 0.5

EVENT_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("input_id", pa.string(), "the input's output id, as in the coverage table"),
    ("class", pa.string(), "the class, as in its coverage column (`car` for `frac_car`)"),
    ("start_frame", pa.int64(), "frame_index of the event's first frame"),
    ("end_frame", pa.int64(), "frame_index of its last frame (inclusive)"),
    ("start_s", pa.float64(), "timestamp_s of the first frame"),
    ("end_s", pa.float64(), "timestamp_s of the last frame"),
    ("frames", pa.int64(), "rows of the coverage table in the event (frames processed)"),
    ("peak_coverage", pa.float64(), "largest frac_<class> in the event"),
    ("mean_coverage", pa.float64(), "mean frac_<class> over the event's frames"),
    ("peak_count", pa.int32(), "largest n_<class> in the event; null for classes without "
                               "object columns"),
]
EVENT_SCHEMA = pa.schema([pa.field(name, dtype) for name, dtype, _ in EVENT_COLUMNS])


@dataclass(frozen=True)
class EventSettings:
    """Hysteresis thresholds (shares of the frame) and the shortest event kept (seconds)."""

    enter: float = DEFAULT_ENTER
    exit: float = DEFAULT_EXIT
    min_duration_s: float = DEFAULT_MIN_DURATION_S

    def __post_init__(self) -> None:
        if not 0.0 <= self.exit <= self.enter <= 1.0:
            raise ValueError(f"event thresholds need 0 <= exit ({self.exit}) <= enter "
                             f"({self.enter}) <= 1")
        if self.min_duration_s < 0:
            raise ValueError("the minimum event duration must be 0 or more")


def present_intervals(values: np.ndarray, enter: float, exit: float) -> list[tuple[int, int]]:
    """Index ranges [first, last] in which a series is present, with hysteresis.

    A run of values above `exit` holds an event from its first value above `enter` to the
    run's end. Vectorised: one pass over the series whatever its length.
    """
    values = np.asarray(values, float)
    above_exit = values > exit
    if not above_exit.any():
        return []
    edges = np.diff(np.concatenate(([False], above_exit, [False])).astype(np.int8))
    run_starts = np.flatnonzero(edges == 1)
    run_ends = np.flatnonzero(edges == -1) - 1
    entering = np.flatnonzero(values > enter)
    intervals = []
    for start, end in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
        at = np.searchsorted(entering, start)
        if at < len(entering) and entering[at] <= end:
            intervals.append((int(entering[at]), end))
    return intervals


def class_columns(names: Iterable[str]) -> list[str]:
    """The class suffixes of a coverage table's `frac_` columns, in table order."""
    return [c[len(FRACTION_PREFIX):] for c in names
            if c.startswith(FRACTION_PREFIX) and c != IGNORE_COLUMN]


def derive_events(coverage: pa.Table, settings: EventSettings) -> pa.Table:
    """The events of one input from its coverage rows (any order), sorted by start, then class."""
    if coverage.num_rows == 0:
        return EVENT_SCHEMA.empty_table()
    ids = coverage.column("input_id").unique().to_pylist()
    if len(ids) != 1:
        raise ValueError(f"events are derived per input, got {len(ids)} inputs")
    order = np.argsort(coverage.column("frame_index").to_numpy(), kind="stable")
    table = coverage.take(pa.array(order))
    frames = table.column("frame_index").to_numpy()
    times = table.column("timestamp_s").to_numpy()
    rows = []
    for rank, cls in enumerate(class_columns(table.column_names)):
        values = table.column(FRACTION_PREFIX + cls).to_numpy(zero_copy_only=False)
        counts_column = COUNT_PREFIX + cls
        counts = (table.column(counts_column).to_numpy(zero_copy_only=False)
                  if counts_column in table.column_names else None)
        for first, last in present_intervals(values, settings.enter, settings.exit):
            if times[last] - times[first] < settings.min_duration_s:
                continue
            inside = values[first:last + 1]
            peak_count = None
            if counts is not None:
                window = counts[first:last + 1]
                window = window[~np.isnan(window)] if window.dtype.kind == "f" else window
                peak_count = int(window.max()) if len(window) else None
            rows.append((int(frames[first]), rank, {
                "input_id": ids[0], "class": cls,
                "start_frame": int(frames[first]), "end_frame": int(frames[last]),
                "start_s": float(times[first]), "end_s": float(times[last]),
                "frames": last - first + 1, "peak_coverage": float(inside.max()),
                "mean_coverage": float(inside.mean()), "peak_count": peak_count}))
    rows.sort(key=lambda r: (r[0], r[1]))
    return pa.Table.from_pylist([r[2] for r in rows], schema=EVENT_SCHEMA)


def parquet_bytes(events: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(events, buf, compression="zstd")
    return buf.getvalue()


def read_tables(blobs: Iterable[bytes]) -> pa.Table:
    """One table from several Parquet files' bytes (an input's coverage segments)."""
    tables = [pq.read_table(io.BytesIO(b)) for b in blobs]
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})


def write_input_events(coverage_pattern: str, events_uri: str, settings: EventSettings) -> int:
    """Derive one input's events from its coverage files as they now stand and write them to
    `events_uri` (a file with no rows when nothing is present); returns how many there are.

    Called when the input is finished, after stale coverage files are gone, so a resumed or
    repeated run derives them from exactly the rows the table holds.
    """
    uris = storage.list_files(coverage_pattern)
    if not uris:
        storage.delete(events_uri)
        return 0
    events = derive_events(read_tables(storage.read_bytes(u) for u in uris), settings)
    storage.write_bytes(events_uri, parquet_bytes(events))
    return events.num_rows


# --------------------------------------------------------------------------- Foxglove


def _time(origin_ns: int, seconds: float) -> dict:
    nanos = origin_ns + round(seconds * 1e9)
    if nanos < 0:
        raise ValueError(f"Foxglove times cannot be negative ({nanos} ns)")
    return {"sec": nanos // 1_000_000_000, "nsec": nanos % 1_000_000_000}


def foxglove_events(events: Iterable[dict], origin_ns: int = 0) -> Iterator[dict]:
    """Events as foxglove.Event messages: start_time/end_time {sec, nsec} at the origin plus
    the event's timestamps, every other column as a key-value pair (values are strings).

    The origin is whole nanoseconds, so a wall-clock origin loses no precision to floats.
    """
    for event in events:
        metadata = [{"key": k, "value": "" if v is None else str(v)} for k, v in event.items()
                    if k not in ("start_s", "end_s")]
        yield {"start_time": _time(origin_ns, event["start_s"]),
               "end_time": _time(origin_ns, event["end_s"]), "metadata": metadata}


def foxglove_json_lines(events: Iterable[dict], origin_ns: int = 0) -> str:
    """One foxglove.Event JSON object per line."""
    return "".join(json.dumps(m, separators=(",", ":")) + "\n"
                   for m in foxglove_events(events, origin_ns))
