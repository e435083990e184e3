"""Fast tier: the finish step's pure parts, fed the records one grouping step hands over."""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

from beam_seg.config import RunConfig
from beam_seg.media.video import Segment, VideoInfo
from beam_seg.pipeline import finish
from beam_seg.pipeline.records import ErrorRecord, UnitStatus, UnitWritten, WorkUnit

INFO = VideoInfo(width=64, height=32, frame_count=30, fps=Fraction(25), duration_s=1.2)


def _unit(index: int, start: int, count: int, segments: int = 3) -> WorkUnit:
    seg = Segment(index, start, count, start / 25, tuple(i / 25 for i in range(start, start + count)))
    return WorkUnit("/in/clip.mp4", "clip-1", "video", seg, segments, INFO)


def _write_table(uri: str, frame_indices: list[int]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    Path(uri).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"frame_index": frame_indices}), uri)


def test_units_that_never_finished_and_frames_without_outputs_are_errors():
    units = [_unit(0, 0, 10), _unit(1, 10, 10), _unit(2, 20, 10)]
    statuses = [UnitStatus(u, 10, 10, frames_read=10) for u in units[:2]]
    written = [UnitWritten(units[0], 10, "seg0.mp4"), UnitWritten(units[1], 7, "seg1.mp4")]
    state = finish.InputState("clip-1", statuses, written)
    reasons = sorted(e.reason for e in finish.unit_errors(state))
    assert reasons == ["3 of 10 frames have no outputs", "only 2 of 3 segments finished"]


def test_a_decode_that_stopped_early_reports_the_frames_it_never_gave():
    unit = _unit(1, 10, 10)
    status = UnitStatus(unit, 10, 4, "decoding stopped after 4 of 10 frames", missing_from=14,
                        frames_read=4)
    (error,) = finish.status_errors(status)
    assert (error.step, error.frame_start, error.frame_stop) == ("decode", 14, 20)


def test_an_input_with_errors_gets_records_and_no_done_marker_and_a_clean_one_the_reverse(tmp_path):
    cfg = RunConfig(output=str(tmp_path / "out"))
    image = WorkUnit("/in/a.png", "a-1", "image")
    failed = finish.InputState("a-1", [UnitStatus(image, 1, 1, frames_read=1)], [],
                               [ErrorRecord("/in/a.png", "a-1", "write", "ValueError: boom", 0, 1,
                                            ["Traceback ...", "ValueError: boom"])])
    summary = finish.finish_input(failed, cfg)
    errors_file = os.path.join(cfg.output, "errors", "a-1.jsonl")
    assert summary["errors"] == 2  # the error, and the frame that has no outputs because of it
    records = [json.loads(line) for line in Path(errors_file).read_text().splitlines()]
    assert [(r["step"], r["frame_start"]) for r in records] == [("write", 0), ("write", 0)]
    assert summary["first_error"] == "ValueError: boom"  # the cause, not its consequence
    assert not os.path.exists(cfg.layout.done_marker("a-1"))

    clean = finish.InputState("a-1", [UnitStatus(image, 1, 1, frames_read=1)], [UnitWritten(image, 1)])
    _write_table(cfg.layout.coverage("a-1", 0), [0])  # a done marker vouches for the row it checks
    summary = finish.finish_input(clean, cfg)
    assert summary["errors"] == 0 and summary["frames"] == 1
    assert not os.path.exists(errors_file)  # a clean re-run leaves no stale record
    marker = json.loads(Path(cfg.layout.done_marker("a-1")).read_text())
    assert marker["fingerprint"] == cfg.fingerprint
    assert marker["options"] == json.loads(json.dumps(cfg.output_options()))
