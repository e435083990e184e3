"""The report's questions, each one SQL query over the run's tables (per input, per label set,
per time bucket), so the Python side handles a few hundred rows however many frames the
run holds."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from beam_seg import storage
from beam_seg.commands.table import Coverage, fraction_columns
from beam_seg.labels import LabelSet
from beam_seg.tables.coverage import FRACTION_PREFIX, IGNORE_COLUMN

TIME_BUCKETS = 300  # points per coverage-over-time plot, however long the video
MAIN_CLASSES = 5  # classes with a column of their own in the per-input table
TOP_CLASSES = 3
MAX_TABLE_ROWS = 200  # inputs listed one by one; the rest are counted
MAX_THUMBNAILS = 12
THUMBNAIL_WIDTH = 360


@dataclass(frozen=True)
class InputSummary:
    """One input's row of the report: its size and its mean class coverage."""

    input_id: str
    source_uri: str
    kind: str
    label_set: str
    model: str
    frames: int
    duration_s: float | None
    width: int
    height: int
    means: dict[str, float]  # fraction column -> mean over the input's frames


def duration_s(frames: int, first_s: float, last_s: float) -> float | None:
    """A video's covered duration: the timestamp span plus one mean frame interval."""
    if frames < 2:
        return None
    span = last_s - first_s
    return span * frames / (frames - 1)


def top_classes(means: dict[str, float], label_set: LabelSet,
                k: int = TOP_CLASSES) -> list[tuple[str, float]]:
    """The k classes (display names) covering most of the input, largest first; zeros dropped."""
    pairs = [(name, means.get(column) or 0.0)
             for name, column in zip(label_set.names, fraction_columns(label_set), strict=True)]
    pairs = [p for p in pairs if p[1] > 0]
    return sorted(pairs, key=lambda p: -p[1])[:k]


def summarize_inputs(cov: Coverage, limit: int = MAX_TABLE_ROWS) -> tuple[list[InputSummary], int]:
    """Per-input aggregates (videos first), at most `limit` of them, and the number of inputs."""
    total = cov.con.execute("SELECT count(DISTINCT input_id) FROM coverage").fetchone()[0]
    rows = cov.query(f"""
        SELECT input_id, any_value(source_uri) AS source_uri, any_value(kind) AS kind,
               any_value(label_set) AS label_set, any_value(model) AS model,
               count(*) AS frames, min(timestamp_s) AS first_s, max(timestamp_s) AS last_s,
               any_value(width) AS width, any_value(height) AS height,
               avg(COLUMNS('^{FRACTION_PREFIX}'))
        FROM coverage GROUP BY input_id
        ORDER BY any_value(kind) = 'video' DESC, input_id LIMIT {int(limit)}""")
    out = []
    for row in rows:
        means = {k: v for k, v in row.items() if k.startswith(FRACTION_PREFIX) and v is not None}
        out.append(InputSummary(
            row["input_id"], row["source_uri"], row["kind"], row["label_set"], row["model"],
            row["frames"], duration_s(row["frames"], row["first_s"], row["last_s"])
            if row["kind"] == "video" else None, row["width"], row["height"], means))
    return out, total


@dataclass(frozen=True)
class ClassMix:
    """A label set's classes over the whole run."""

    label_set: LabelSet
    inputs: int
    frames: int
    mean: dict[str, float]  # column -> mean of the per-input means (each input counts once)
    frames_over_1pct: dict[str, float]  # column -> share of frames where the class covers > 1%

    def main_columns(self, k: int = MAIN_CLASSES) -> list[str]:
        """The k classes covering most of the run, in class-id order (road before sky)."""
        columns = fraction_columns(self.label_set)
        largest = set(sorted(columns, key=lambda c: -(self.mean.get(c) or 0.0))[:k])
        return [c for c in columns if c in largest]


def class_mix(cov: Coverage) -> list[ClassMix]:
    per_set = {r["label_set"]: r for r in cov.query(f"""
        WITH per_input AS (
            SELECT input_id, any_value(label_set) AS label_set, count(*) AS frames,
                   avg(COLUMNS('^{FRACTION_PREFIX}'))
            FROM coverage GROUP BY input_id)
        SELECT label_set, count(*) AS inputs, sum(frames) AS frames,
               avg(COLUMNS('^{FRACTION_PREFIX}'))
        FROM per_input GROUP BY label_set""")}
    shares = {r["label_set"]: r for r in cov.query(f"""
        SELECT label_set, avg(CAST(COLUMNS('^{FRACTION_PREFIX}') > 0.01 AS DOUBLE))
        FROM coverage GROUP BY label_set""")}
    mixes = []
    for name, label_set in cov.label_sets.items():
        row, share = per_set[name], shares[name]
        columns = [*fraction_columns(label_set), IGNORE_COLUMN]
        mixes.append(ClassMix(label_set, row["inputs"], int(row["frames"]),
                              {c: row.get(c) or 0.0 for c in columns},
                              {c: share.get(c) or 0.0 for c in columns}))
    return mixes


@dataclass(frozen=True)
class TimeSeries:
    """One video's class coverage, averaged over time buckets."""

    input_id: str
    times_s: np.ndarray  # mean timestamp of each bucket
    fractions: dict[str, np.ndarray]  # column -> mean coverage per bucket
    road_ahead: np.ndarray | None = None  # mean roi_road per bucket (NaN: none in the bucket)
    flicker: np.ndarray | None = None  # mean flicker per bucket (NaN: none in the bucket)


def coverage_over_time(cov: Coverage, input_ids: Sequence[str],
                       buckets: int = TIME_BUCKETS) -> dict[str, TimeSeries]:
    """Bucket each video's frames into at most `buckets` equal time slots, in SQL."""
    if not input_ids:
        return {}
    # roi_road: tables from before the region columns, and other label sets, have none
    road = ", avg(c.roi_road) AS road_ahead" if "roi_road" in cov.columns() else ""
    # flicker: null without temporal fusion, absent from tables made before it
    shaky = ", avg(c.flicker) AS flicker_mean" if "flicker" in cov.columns() else ""
    rows = cov.query(f"""
        WITH span AS (
            SELECT input_id, min(timestamp_s) AS t0,
                   greatest(max(timestamp_s) - min(timestamp_s), 1e-9) / {int(buckets)} AS width
            FROM coverage WHERE input_id IN (SELECT unnest($ids)) GROUP BY input_id)
        SELECT c.input_id, least(floor((c.timestamp_s - s.t0) / s.width), {int(buckets) - 1})::BIGINT
                   AS bucket,
               avg(c.timestamp_s) AS t, avg(COLUMNS('^{FRACTION_PREFIX}')){road}{shaky}
        FROM coverage c JOIN span s USING (input_id)
        GROUP BY ALL ORDER BY 1, 2""", {"ids": list(input_ids)})
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["input_id"], []).append(row)
    series = {}
    for iid, items in grouped.items():
        columns = [k for k in items[0] if k.startswith(FRACTION_PREFIX) and items[0][k] is not None]
        ahead = (np.array([np.nan if r["road_ahead"] is None else r["road_ahead"] for r in items])
                 if road else None)
        flicker = (np.array([np.nan if r["flicker_mean"] is None else r["flicker_mean"] for r in items])
                   if shaky else None)
        series[iid] = TimeSeries(iid, np.array([r["t"] for r in items], float),
                                 {c: np.array([r[c] for r in items], float) for c in columns},
                                 ahead if ahead is not None and not np.isnan(ahead).all() else None,
                                 flicker if flicker is not None and not np.isnan(flicker).all() else None)
    return series


@dataclass(frozen=True)
class Thumbnail:
    input_id: str
    frame_index: int
    timestamp_s: float
    kind: str
    overlay_uri: str  # relative to the output root, for the full-size link
    jpeg: bytes


def pick_thumbnail_frames(cov: Coverage, limit: int = MAX_THUMBNAILS) -> list[dict]:
    """The middle frame of a few inputs, videos first."""
    return cov.query(f"""
        SELECT input_id, kind, frame_index, timestamp_s, overlay_uri FROM (
            SELECT input_id, kind, frame_index, timestamp_s, overlay_uri,
                   row_number() OVER (PARTITION BY input_id ORDER BY frame_index) AS rn,
                   count(*) OVER (PARTITION BY input_id) AS n
            FROM coverage)
        WHERE rn = n // 2 + 1 ORDER BY kind = 'video' DESC, input_id LIMIT {int(limit)}""")


def thumbnail_jpeg(data: bytes, width: int = THUMBNAIL_WIDTH) -> bytes:
    """A small JPEG of an overlay, for embedding (full-size overlays would bloat the HTML)."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    height = max(1, round(image.height * width / image.width))
    buf = io.BytesIO()
    image.resize((width, height), Image.BILINEAR).save(buf, format="JPEG", quality=82)
    return buf.getvalue()


def load_thumbnails(cov: Coverage, limit: int = MAX_THUMBNAILS) -> list[Thumbnail]:
    thumbs = []
    for row in pick_thumbnail_frames(cov, limit):
        try:
            data = storage.read_bytes(storage.join(cov.out, row["overlay_uri"]))
            jpeg = thumbnail_jpeg(data)
        except (OSError, ValueError):  # missing or unreadable overlay: the report goes on
            continue
        thumbs.append(Thumbnail(row["input_id"], row["frame_index"], row["timestamp_s"],
                                row["kind"], row["overlay_uri"], jpeg))
    return thumbs




def videos(cov: Coverage) -> list[dict]:
    """One row per video: its label set, source, frames and first and last timestamps."""
    return cov.query("""
        SELECT input_id, any_value(label_set) AS label_set, any_value(source_uri) AS source_uri,
               count(*) AS frames, min(timestamp_s) AS first_s, max(timestamp_s) AS last_s
        FROM coverage WHERE kind = 'video' GROUP BY input_id
        ORDER BY input_id""")


def events_by_input(cov: Coverage, input_ids: Sequence[str]) -> dict[str, list[dict]]:
    """The events of some inputs, in start order."""
    if not input_ids:
        return {}
    rows = cov.query("SELECT * EXCLUDE (file_row_number) FROM events "
                     "WHERE input_id IN (SELECT unnest($ids)) ORDER BY input_id, file_row_number",
                     {"ids": list(input_ids)})
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["input_id"], []).append(row)
    return grouped
