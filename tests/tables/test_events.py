"""Events with hysteresis from a coverage table, and their Foxglove export (no model)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from beam_seg.tables.events import (
    EVENT_SCHEMA,
    EventSettings,
    derive_events,
    foxglove_events,
    present_intervals,
)


def _reference_intervals(values, enter, exit):
    """A plain state machine, written from the definition, to check the vectorised one."""
    out, start = [], None
    for i, v in enumerate(values):
        if start is None and v > enter:
            start = i
        elif start is not None and v <= exit:
            out.append((start, i - 1))
            start = None
    if start is not None:
        out.append((start, len(values) - 1))
    return out


def test_hysteresis_by_hand():
    values = [0, 0.006, 0.003, 0.003, 0.001, 0.004, 0.006, 0.0, 0.0021, 0.002]
    # 0.006 enters; 0.003 stays above exit; 0.001 leaves. 0.004 alone does not enter, but
    # opens the run that 0.006 enters. 0.0021 never enters.
    assert present_intervals(np.array(values), 0.005, 0.002) == [(1, 3), (6, 6)]
    assert present_intervals(np.array(values), 0.0, 0.0) == [(1, 6), (8, 9)]
    assert present_intervals(np.zeros(5), 0.005, 0.002) == []


def test_hysteresis_matches_the_state_machine_on_random_series():
    rng = np.random.default_rng(7)
    for _ in range(200):
        values = np.clip(rng.normal(0.004, 0.003, size=rng.integers(1, 60)), 0, 1)
        got = present_intervals(values, 0.005, 0.002)
        assert got == _reference_intervals(values, 0.005, 0.002)
        for first, last in got:
            assert values[first] > 0.005 and (values[first:last + 1] > 0.002).all()


def _coverage(frames, car, person=None, counts=None, step=1, fps=10.0, input_id="drive-1"):
    n = len(car)
    index = np.arange(n) * step
    columns = {"input_id": [input_id] * n, "frame_index": index, "timestamp_s": index / fps,
               "frac_road": np.full(n, 0.4), "frac_car": np.asarray(car, float),
               "frac_person": np.asarray(person if person is not None else np.zeros(n), float),
               "frac_ignore": np.zeros(n)}
    if counts is not None:
        columns["n_car"] = pa.array(counts, pa.int32())
    return pa.table(columns)


def test_events_of_one_input():
    car = [0, 0.01, 0.01, 0.003, 0.001, 0, 0, 0.02, 0.02, 0.02, 0.02, 0.02]
    table = _coverage(12, car, counts=[0, 1, 2, 1, 0, 0, 0, 3, 3, 4, 3, 3])
    events = derive_events(table, EventSettings(0.005, 0.002, 0.0)).to_pylist()
    by_class = [(e["class"], e["start_frame"], e["end_frame"]) for e in events]
    assert by_class == [("road", 0, 11), ("car", 1, 3), ("car", 7, 11)]
    car1 = events[1]
    assert car1["frames"] == 3 and car1["start_s"] == 0.1 and car1["end_s"] == pytest.approx(0.3)
    assert car1["peak_coverage"] == 0.01
    assert car1["mean_coverage"] == pytest.approx((0.01 + 0.01 + 0.003) / 3)
    assert car1["peak_count"] == 2 and events[2]["peak_count"] == 4
    assert events[0]["peak_count"] is None  # road has no object columns


def test_short_events_are_dropped_and_frame_gaps_kept():
    car = [0.01, 0.01, 0, 0.01, 0.01, 0.01, 0.01]
    table = _coverage(7, car, step=5, fps=25.0)  # every 5th frame: 0.2 s apart
    events = derive_events(table, EventSettings(0.005, 0.002, 0.5)).to_pylist()
    cars = [e for e in events if e["class"] == "car"]
    # the first (0.0-0.2 s) lasts 0.2 s; the second (frames 15-30, 0.6-1.2 s) is kept
    assert [(e["start_frame"], e["end_frame"], e["frames"]) for e in cars] == [(15, 30, 4)]


def test_row_order_does_not_matter():
    car = [0.0, 0.01, 0.01, 0.0, 0.02, 0.02]
    table = _coverage(6, car)
    shuffled = table.take(pa.array([5, 2, 0, 4, 1, 3]))
    settings = EventSettings(0.005, 0.002, 0.0)
    assert derive_events(shuffled, settings) == derive_events(table, settings)


def test_no_rows_no_events_and_one_input_only():
    empty = _coverage(0, [])
    assert derive_events(empty, EventSettings()).schema == EVENT_SCHEMA
    two = pa.concat_tables([_coverage(2, [0.1, 0.1]), _coverage(2, [0.1, 0.1], input_id="other")])
    with pytest.raises(ValueError, match="per input"):
        derive_events(two, EventSettings())


@pytest.mark.parametrize("enter, exit, minimum", [(0.001, 0.002, 0), (0.5, -0.1, 0), (0.1, 0.1, -1)])
def test_bad_settings(enter, exit, minimum):
    with pytest.raises(ValueError):
        EventSettings(enter, exit, minimum)


def test_foxglove_events_follow_the_schema():
    events = derive_events(_coverage(5, [0.0, 0.02, 0.02, 0.02, 0.0]), EventSettings(0.005, 0.002, 0))
    messages = list(foxglove_events(events.to_pylist(), origin_ns=1_700_000_000_250_000_000))
    assert len(messages) == 2  # road and car
    car = messages[1]
    assert set(car) == {"start_time", "end_time", "metadata"}
    assert car["start_time"] == {"sec": 1_700_000_000, "nsec": 350_000_000}
    assert car["end_time"] == {"sec": 1_700_000_000, "nsec": 550_000_000}
    keys = [kv["key"] for kv in car["metadata"]]
    assert len(keys) == len(set(keys))  # keys must be unique
    meta = {kv["key"]: kv["value"] for kv in car["metadata"]}
    assert meta["class"] == "car" and meta["start_frame"] == "1" and meta["end_frame"] == "3"
    assert all(isinstance(kv["value"], str) for kv in car["metadata"])
    json.dumps(messages)  # plain JSON
