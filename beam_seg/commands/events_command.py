"""`beam-seg events`: a run's events as a table, CSV, JSON lines or Foxglove Event JSON.

By default it reads what the run wrote (OUT/events/*.parquet). Given other thresholds
(`--enter`, `--exit`, `--min-duration`), it derives the events again from the coverage
table with the same function the pipeline uses, without touching OUT: a quick way to tune
them before a re-run.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

from beam_seg import storage
from beam_seg.commands.commands import ArgumentParser, UsageError, check_classes, run_command
from beam_seg.commands.table import Coverage, open_coverage
from beam_seg.commands.terminal import text_table
from beam_seg.tables.events import EVENT_SCHEMA, EventSettings, derive_events, foxglove_json_lines

FORMATS = ("table", "csv", "jsonl", "foxglove")
COLUMNS = EVENT_SCHEMA.names


def time_origin_ns(text: str) -> int:
    """`--time-origin`: seconds since the Unix epoch, or an ISO 8601 time (UTC if no zone)."""
    try:
        return int(Decimal(text) * 1_000_000_000)
    except InvalidOperation:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither seconds nor an ISO 8601 time (2024-05-01T12:00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    since = when - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (since.days * 86_400 + since.seconds) * 1_000_000_000 + since.microseconds * 1_000


def stored_events(cov: Coverage, classes: Sequence[str]) -> list[dict]:
    rows = cov.query("SELECT * EXCLUDE (file_row_number) FROM events ORDER BY input_id, file_row_number")
    return [r for r in rows if not classes or r["class"] in classes]


def derived_events(cov: Coverage, settings: EventSettings, classes: Sequence[str]) -> list[dict]:
    """The events of every video, derived afresh from the coverage table."""
    ids = [r["input_id"] for r in cov.query(
        "SELECT DISTINCT input_id FROM coverage WHERE kind = 'video' ORDER BY 1")]
    rows: list[dict] = []
    for iid in ids:
        result = cov.con.sql("SELECT * EXCLUDE (filename) FROM coverage WHERE input_id = $id",
                             params={"id": iid})
        # DuckDB 2 names it to_arrow_table; 1.x returned the table from arrow()
        table = result.to_arrow_table() if hasattr(result, "to_arrow_table") else result.arrow()
        rows += derive_events(table, settings).to_pylist()
    return [r for r in rows if not classes or r["class"] in classes]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def render(rows: list[dict], fmt: str, origin_ns: int) -> str:
    if fmt == "foxglove":
        return foxglove_json_lines(rows, origin_ns)
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    right = [name not in ("input_id", "class") for name in COLUMNS]
    body = [[_cell(r[c]) for c in COLUMNS] for r in rows]
    return text_table(list(COLUMNS), body, right) + f"\n({len(rows)} events)\n"


def _command(args: argparse.Namespace) -> int:
    overrides = {"enter": args.enter, "exit": args.exit, "min_duration_s": args.min_duration}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    with open_coverage(args.output) as cov:
        check_classes(args.classes, [c for s in cov.label_sets.values() for c in s.column_names()])
        if overrides:
            try:
                settings = dataclasses.replace(EventSettings(), **overrides)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            rows = derived_events(cov, settings, args.classes)
        else:
            rows = stored_events(cov, args.classes)
    text = render(rows, args.format, args.time_origin)
    if args.to:
        storage.write_bytes(args.to, text.encode("utf-8"))
        print(f"{len(rows)} events written to {args.to}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="beam-seg events",
        description="List a run's events (intervals in which a class is present in a video), "
                    "or export them as Foxglove Event JSON.")
    parser.add_output()
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="table (default), csv, jsonl (one event per line) or foxglove "
                             "(one foxglove.Event JSON object per line)")
    parser.add_argument("--class", dest="classes", action="append", default=[], metavar="CLASS",
                        help="only this class, as in its column (car, traffic_light); repeatable")
    parser.add_argument("--time-origin", type=time_origin_ns, default=0, metavar="TIME",
                        help="foxglove: the wall-clock time of the videos' first frame, as "
                             "seconds since the Unix epoch or ISO 8601 (default 0: times "
                             "relative to the start of each video)")
    parser.add_argument("--to", metavar="FILE", help="write to FILE (local or gs://) instead of stdout")
    for flag, dest, meaning in (
            ("--enter", "enter", "derive the events again with this enter threshold"),
            ("--exit", "exit", "... with this exit threshold"),
            ("--min-duration", "min_duration", "... with this minimum duration (seconds)")):
        parser.add_argument(flag, dest=dest, type=float, metavar="X",
                            help=meaning + " (from the coverage table; OUT is not changed)")
    return run_command(parser, sys.argv[1:] if argv is None else argv, _command)
