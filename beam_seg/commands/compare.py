"""`beam-seg report OUT_A OUT_B`: two runs of the same inputs side by side (e.g. two models on
the user's own footage). Inputs are matched by input id (`<stem>-<hash8>` of the source's
URI), so both runs must have read the same files; each run's tables stay in its own DuckDB
view (`table.open_coverage`), and only the inputs in both are compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from beam_seg import storage
from beam_seg.commands import timeline
from beam_seg.commands.queries import duration_s, thumbnail_jpeg, top_classes
from beam_seg.commands.table import Coverage, class_color, fraction_columns, open_coverage
from beam_seg.commands.terminal import format_duration, percent, text_table
from beam_seg.labels import LabelSet
from beam_seg.tables import domain
from beam_seg.tables.coverage import FRACTION_PREFIX

MAX_COMPARED = 40  # inputs shown with their pictures; the table counts the rest
COMPARE_THUMBNAIL_WIDTH = 540


@dataclass(frozen=True)
class RunSide:
    """One input as one run saw it."""

    model: str
    label_set: LabelSet
    frames: int
    confidence: float | None
    means: dict[str, float]  # fraction column -> mean over the input's frames
    overlay_uri: str  # the middle frame's overlay, relative to the run's root
    overlay_jpeg: bytes | None  # a thumbnail of it; None when it cannot be read
    video_url: str | None  # the segmented video from the page; None: none, or not reachable


@dataclass(frozen=True)
class Compared:
    input_id: str
    source_uri: str
    kind: str
    duration_s: float | None
    sides: tuple[RunSide, RunSide]


@dataclass(frozen=True)
class RunInfo:
    out: str
    models: list[str]
    inputs: int
    link_base: str | None  # the run's root as a relative URL from the page
    warnings: list[str]  # the out-of-domain lines of the run's inputs in the comparison
    class_mix: dict[str, tuple[float, tuple[int, int, int]]]  # class name -> (share, colour)
    mean_confidence: float | None  # over the inputs in both runs, each counted once


@dataclass(frozen=True)
class Comparison:
    runs: tuple[RunInfo, RunInfo]
    common: int  # inputs in both runs
    inputs: list[Compared]  # the first MAX_COMPARED of them, videos first


def _input_ids(cov: Coverage) -> dict[str, str]:
    return {r["input_id"]: r["kind"] for r in cov.query(
        "SELECT input_id, any_value(kind) AS kind FROM coverage GROUP BY input_id")}


def _per_input(cov: Coverage, ids: Sequence[str]) -> dict[str, dict]:
    """Model, label set, frames, time span, mean confidence and class means of some inputs,
    and the overlay of each one's middle frame."""
    confidence = "avg(confidence)" if "confidence" in cov.columns() else "NULL::DOUBLE"
    rows = cov.query(f"""
        WITH ranked AS (
            SELECT *, row_number() OVER (PARTITION BY input_id ORDER BY frame_index) AS rn,
                      count(*) OVER (PARTITION BY input_id) AS n
            FROM coverage WHERE input_id IN (SELECT unnest($ids)))
        SELECT input_id, any_value(source_uri) AS source_uri, any_value(kind) AS kind,
               any_value(model) AS model, any_value(label_set) AS label_set, count(*) AS frames,
               min(timestamp_s) AS first_s, max(timestamp_s) AS last_s,
               {confidence} AS confidence, any_value(overlay_uri) FILTER (rn = n // 2 + 1) AS overlay,
               avg(COLUMNS('^{FRACTION_PREFIX}'))
        FROM ranked GROUP BY input_id""", {"ids": list(ids)})
    return {r["input_id"]: r for r in rows}


def _class_mix(cov: Coverage, ids: Sequence[str]) -> dict[str, tuple[float, tuple[int, int, int]]]:
    """Class name -> (mean over the inputs of each input's mean share, colour)."""
    rows = cov.query(f"""
        WITH per_input AS (
            SELECT input_id, any_value(label_set) AS label_set, avg(COLUMNS('^{FRACTION_PREFIX}'))
            FROM coverage WHERE input_id IN (SELECT unnest($ids)) GROUP BY input_id)
        SELECT label_set, count(*) AS inputs, sum(COLUMNS('^{FRACTION_PREFIX}')) FROM per_input
        GROUP BY label_set""", {"ids": list(ids)})
    total = sum(r["inputs"] for r in rows) or 1
    mix: dict[str, tuple[float, tuple[int, int, int]]] = {}
    for row in rows:
        label_set = cov.label_sets[row["label_set"]]
        for name, column in zip(label_set.names, fraction_columns(label_set), strict=True):
            share = (row.get(column) or 0.0) / total + mix.get(name, (0.0,))[0]
            mix[name] = (share, class_color(label_set, column))
    return {name: v for name, v in mix.items() if v[0] > 0}


def _side(cov: Coverage, row: dict, base: str | None) -> RunSide:
    label_set = cov.label_sets[row["label_set"]]
    means = {k: v for k, v in row.items() if k.startswith(FRACTION_PREFIX) and v is not None}
    jpeg = None
    if row["overlay"]:
        try:
            jpeg = thumbnail_jpeg(storage.read_bytes(storage.join(cov.out, row["overlay"])),
                                  COMPARE_THUMBNAIL_WIDTH)
        except (OSError, ValueError):  # missing or unreadable overlay: the page goes on
            jpeg = None
    video = None
    if row["kind"] == "video" and base is not None and storage.exists(
            storage.join(cov.out, "videos", f"{row['input_id']}.mp4")):
        video = timeline.url_join(base, f"videos/{row['input_id']}.mp4")
    return RunSide(row["model"], label_set, row["frames"], row["confidence"], means,
                   row["overlay"] or "", jpeg, video)


def _confidence_and_warnings(cov: Coverage, ids: set[str]) -> tuple[float | None, list[str]]:
    """The mean confidence of some inputs (each counted once) and their out-of-domain lines."""
    inputs = [i for i in domain.input_confidences(cov) if i.input_id in ids]
    known = [i.confidence for i in inputs if i.confidence is not None]
    presets = domain.presets_from_markers(cov.out, domain.candidates(inputs))
    return (sum(known) / len(known) if known else None,
            domain.warning_lines(domain.domain_warning(inputs, presets)))


def compare_runs(out_a: str, out_b: str, html_path: str) -> Comparison:
    """Everything the comparison page shows, read from both runs' tables."""
    with open_coverage(out_a) as cov_a, open_coverage(out_b) as cov_b:
        kinds_a, kinds_b = _input_ids(cov_a), _input_ids(cov_b)
        common = sorted(set(kinds_a) & set(kinds_b), key=lambda i: (kinds_a[i] != "video", i))
        shown = common[:MAX_COMPARED]
        runs, rows = [], []
        for cov, kinds in ((cov_a, kinds_a), (cov_b, kinds_b)):
            base = storage.link_base(cov.out, html_path)
            per_input = _per_input(cov, shown)
            rows.append((per_input, base))
            models = [r["model"] for r in cov.query("SELECT DISTINCT model FROM coverage ORDER BY 1")]
            confidence, warnings = _confidence_and_warnings(cov, set(common))
            runs.append(RunInfo(cov.out, models, len(kinds), base, warnings,
                                _class_mix(cov, common) if common else {}, confidence))
        compared = []
        for iid in shown:
            a, b = rows[0][0][iid], rows[1][0][iid]
            span = duration_s(a["frames"], a["first_s"], a["last_s"]) if a["kind"] == "video" else None
            compared.append(Compared(iid, a["source_uri"], a["kind"], span,
                                     (_side(cov_a, a, rows[0][1]), _side(cov_b, b, rows[1][1]))))
    return Comparison((runs[0], runs[1]), len(common), compared)


def confidence_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def side_summary(side: RunSide) -> str:
    return ", ".join(f"{name} {percent(v)}" for name, v in top_classes(side.means, side.label_set))


def terminal_comparison(comparison: Comparison) -> str:
    """Both runs' model, confidence and top classes per input, as a plain text table."""
    a, b = comparison.runs
    lines = [f"A: {a.out} (model {', '.join(a.models)}, {a.inputs} inputs)",
             f"B: {b.out} (model {', '.join(b.models)}, {b.inputs} inputs)",
             f"{comparison.common} inputs in both runs"]
    for name, run in (("A", a), ("B", b)):
        lines += [f"{name}: {line}" for line in run.warnings]
    rows = [[c.input_id, c.kind, format_duration(c.duration_s) if c.kind == "video" else "-",
             confidence_text(c.sides[0].confidence), confidence_text(c.sides[1].confidence),
             side_summary(c.sides[0]), side_summary(c.sides[1])] for c in comparison.inputs]
    table = text_table(["input", "kind", "duration", "conf A", "conf B", "top classes A",
                        "top classes B"], rows, [False, False, True, True, True, False, False])
    parts = ["\n".join(lines), table]
    if comparison.common > len(comparison.inputs):
        parts.append(f"... and {comparison.common - len(comparison.inputs)} more inputs in both "
                     f"runs (the first {len(comparison.inputs)} shown)")
    return "\n\n".join(parts)
