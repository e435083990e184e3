"""`beam-seg events` on a run made without a model (fast tier)."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest

from beam_seg.commands.events_command import time_origin_ns

from cli_runs import run_in_process
from synthetic_run import CAR_FRAMES, FPS, IID, write_synthetic_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("events-run")
    write_synthetic_run(out)
    return out


def _events(*argv: str) -> tuple[int, str, str]:
    return run_in_process("events", *argv)


def test_the_table_lists_the_stored_events(run):
    code, out, err = _events(str(run), "--class", "car")
    assert code == 0, err
    (row,) = [line.split() for line in out.splitlines() if line.startswith(IID)]
    assert row[1:4] == ["car", str(CAR_FRAMES.start), str(CAR_FRAMES.stop - 1)]
    assert out.rstrip().endswith("(1 events)")


def test_csv_holds_what_the_events_file_holds(run):
    code, out, _ = _events(str(run), "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    stored = pq.read_table(run / "events" / f"{IID}.parquet").to_pylist()
    assert [(r["class"], int(r["start_frame"]), int(r["end_frame"])) for r in rows] == \
        [(e["class"], e["start_frame"], e["end_frame"]) for e in stored]
    assert {r["class"] for r in rows} == {"road", "building", "sky", "car"}


def test_other_thresholds_derive_the_events_again_without_touching_out(run):
    before = (run / "events" / f"{IID}.parquet").read_bytes()
    # the car covers 4% of its frames: entering above 5% means no car event at all
    code, out, _ = _events(str(run), "--format", "jsonl", "--enter", "0.05")
    assert code == 0
    assert "car" not in {json.loads(line)["class"] for line in out.splitlines()}
    code, out, _ = _events(str(run), "--format", "jsonl", "--class", "car", "--min-duration", "2")
    assert code == 0 and out == ""  # the car is in view for 0.9 s
    assert (run / "events" / f"{IID}.parquet").read_bytes() == before


def test_foxglove_export_to_a_file(run, tmp_path):
    target = tmp_path / "events.jsonl"
    code, _, err = _events(str(run), "--format", "foxglove", "--class", "car",
                           "--time-origin", "1700000000.5", "--to", str(target))
    assert code == 0 and "1 events written" in err
    (message,) = [json.loads(line) for line in target.read_text().splitlines()]
    start, end = CAR_FRAMES.start / FPS, (CAR_FRAMES.stop - 1) / FPS
    assert message["start_time"] == {"sec": 1_700_000_000 + int(start + 0.5),
                                     "nsec": round((start + 0.5) % 1 * 1e9)}
    assert message["end_time"] == {"sec": 1_700_000_000 + int(end + 0.5),
                                   "nsec": round((end + 0.5) % 1 * 1e9)}


@pytest.mark.parametrize("text, nanoseconds", [
    ("0", 0),
    ("1714564800.25", 1_714_564_800_250_000_000),
    ("2024-05-01T12:00:00Z", 1_714_564_800_000_000_000),
    ("2024-05-01T14:00:00.5+02:00", 1_714_564_800_500_000_000),
    ("2024-05-01T12:00:00", 1_714_564_800_000_000_000),  # no zone: UTC
])
def test_time_origin(text, nanoseconds):
    assert time_origin_ns(text) == nanoseconds


@pytest.mark.parametrize("argv, reason", [
    (["--enter", "0.001", "--exit", "0.01"], "exit (0.01) <= enter (0.001)"),
    (["--format", "xml"], "invalid choice"),
    (["--time-origin", "yesterday"], "neither seconds nor an ISO 8601 time"),
])
def test_bad_arguments_are_one_line_errors(run, argv, reason):
    code, _, err = _events(str(run), *argv)
    assert code == 2 and err.count("\n") == 1 and reason in err, err


def test_a_folder_without_a_run_is_a_one_line_error(tmp_path):
    code, _, err = _events(str(tmp_path))
    assert code == 2 and "no coverage files" in err
