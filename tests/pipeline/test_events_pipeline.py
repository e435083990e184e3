"""The pipeline's side of regions and events: the columns in every segment's table, the
events file derived from the whole finished table, and the options that shape them."""

from __future__ import annotations

import contextlib
import io

import pyarrow.parquet as pq
import pytest

from beam_seg import naming
from beam_seg.tables.events import EventSettings, derive_events, read_tables
from beam_seg.tables.regions import OBJECT_CLASSES

from conftest import make_index_video
from pipeline_helpers import segment

FRAMES = 24


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_index_video(tmp_path_factory.mktemp("clip") / "bars.mp4", FRAMES)


def _table(out, iid):
    return read_tables(p.read_bytes() for p in sorted((out / "coverage" / iid).glob("*.parquet")))


@pytest.mark.real_model
def test_events_are_derived_from_the_whole_table_with_the_runs_options(clip, tmp_path):
    out = tmp_path / "out"
    # three 8-frame segments, so events are joined across segment files; thresholds that
    # the model's output on the bars crosses for some class
    options = ["--quality", "fast", "--segment-frames", "8", "--event-enter", "0.05",
               "--event-exit", "0.01", "--event-min-duration", "0.1"]
    assert segment([clip], out, *options) == 0
    iid = naming.input_id(str(clip))
    coverage = _table(out, iid)
    assert coverage.num_rows == FRAMES
    for cls in OBJECT_CLASSES:
        assert {f"n_{cls}", f"largest_{cls}", f"lowest_{cls}"} <= set(coverage.column_names)
    assert "roi_road" in coverage.column_names
    written = pq.read_table(out / "events" / f"{iid}.parquet")
    assert written.num_rows > 0
    assert written.to_pylist() == derive_events(coverage, EventSettings(0.05, 0.01, 0.1)).to_pylist()
    # an event longer than one segment is one row, not one per segment file
    assert any(e["frames"] > 8 for e in written.to_pylist())

    # the thresholds shape the outputs: other ones redo the input and its events
    assert segment([clip], out, *options[:-1], "0.5", "--overwrite") == 0
    again = pq.read_table(out / "events" / f"{iid}.parquet").to_pylist()
    assert again == derive_events(_table(out, iid), EventSettings(0.05, 0.01, 0.5)).to_pylist()
    assert all(e["end_s"] - e["start_s"] >= 0.5 for e in again)


@pytest.mark.parametrize("args, reason", [
    (["--event-enter", "0.01", "--event-exit", "0.02"], "exit (0.02) <= enter (0.01)"),
    (["--roi", "0,0 1,0 1,1.5"], "outside 0..1"),
    (["--roi", "0,0 1,1"], "at least 3 points"),
    (["--min-object-area", "2"], "between 0 and 1"),
])
def test_bad_region_and_event_options_are_usage_errors(clip, tmp_path, args, reason):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        segment([clip], tmp_path / "out", *args)
    assert exit_.value.code == 2
    assert reason in err.getvalue()
    assert not (tmp_path / "out").exists()
