"""What a run's error records (OUT/errors/<input id>.jsonl) say, read back for the end-of-run
summary and for `beam-seg report`: the cause of each failed input. No Beam here, so the
report command stays quick to start."""

from __future__ import annotations

import json
from collections.abc import Container, Sequence

from beam_seg import naming, storage
from beam_seg.pipeline.records import ErrorRecord


def first_cause(errors: list[ErrorRecord]) -> ErrorRecord:
    """The error to show first: one that caught an exception (it has a traceback) says why,
    where a derived one ('3 of 10 frames have no outputs') only says what is missing."""
    return next((e for e in errors if e.details), errors[0])


def recorded_failures(layout: naming.OutputLayout,
                      only: Container[str] | None = None) -> list[tuple[str, str, str]]:
    """(input id, source, the reason of its cause) of every input of OUT that has error
    records (written for a failed input, deleted when a re-run finishes it), by input id;
    `only`: of these input ids alone (the others' records are not read)."""
    failures = []
    for uri in sorted(storage.list_files(layout.errors_glob())):
        iid = uri.rsplit("/", 1)[-1][: -len(".jsonl")]
        if only is not None and iid not in only:
            continue
        source = ""
        try:
            records = [ErrorRecord(**json.loads(line)) for line in storage.read_bytes(uri).splitlines()]
            cause = first_cause(records)
            source, reason = cause.source_uri, f"{cause.step}: {cause.reason}"
        except (OSError, ValueError, IndexError, KeyError, TypeError):
            reason = "see its error record"
        failures.append((iid, source, reason))
    return failures


def failure_lines(failures: Sequence[tuple[str, str]], limit: int | None = None) -> list[str]:
    """`failed: SOURCE: CAUSE` for each (source, cause), at most `limit` of them and then how
    many more: as the end-of-run summary and `beam-seg report` print them."""
    shown = failures if limit is None else failures[:limit]
    lines = [f"failed: {source}: {reason}" for source, reason in shown]
    if len(shown) < len(failures):
        lines.append(f"... and {len(failures) - len(shown)} more failed inputs")
    return lines
