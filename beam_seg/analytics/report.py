"""`beam-seg report`: what a run saw, read from its coverage table alone.

Every aggregation runs inside DuckDB (per input, per label set, per time bucket), so the
Python side only handles a few hundred rows however many frames the run holds. Plots
are drawn with matplotlib's Agg backend (no display needed) and the HTML embeds them as
data URIs, so the report is one file that opens anywhere, even copied out of a bucket.

This module and `beam_seg.evaluate` share the helpers here for reading a run's outputs,
local or on an object store (`gs://` goes through Beam's FileSystems in `beam_seg.storage`,
imported only when a remote URI is actually used: DuckDB has no offline `gs://` reader).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import glob
import html
import io
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb
import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from beam_seg.analytics.coverage import FRACTION_PREFIX, IGNORE_COLUMN
from beam_seg.labels import BUILTIN, CITYSCAPES, LabelSet, voc_colormap

TIME_BUCKETS = 300  # points per coverage-over-time plot, however long the video
MAIN_CLASSES = 5  # classes with a column of their own in the per-input table
TOP_CLASSES = 3
MAX_TABLE_ROWS = 200  # inputs listed one by one; the rest are counted
MAX_THUMBNAILS = 12
THUMBNAIL_WIDTH = 360
IGNORE_COLOR = (128, 128, 128)
LEGEND_ENTRIES = 16


# --------------------------------------------------------------------------- command plumbing


class UsageError(Exception):
    """A bad argument or an unusable input: one line on stderr and exit code 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports errors as `beam-seg: error: ...` (one line, exit 2), no usage dump."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message)


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str],
                command: Callable[[argparse.Namespace], int]) -> int:
    """Parse and run, turning every expected failure into one error line instead of a traceback."""
    try:
        args = parser.parse_args(list(argv))
        return command(args)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except UsageError as exc:
        print(f"beam-seg: error: {exc}", file=sys.stderr)
        return 2
    except (duckdb.Error, OSError, ValueError) as exc:
        message = " ".join(str(exc).split())
        print(f"beam-seg: error: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------- file access


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def local_path(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def join(base: str, *parts: str) -> str:
    if is_remote(base):
        return "/".join([base.rstrip("/"), *parts])
    return os.path.join(local_path(base), *parts)


def read_bytes(uri: str) -> bytes:
    if is_remote(uri):
        from beam_seg import storage

        return storage.read_bytes(uri)
    with open(local_path(uri), "rb") as f:
        return f.read()


def write_bytes(uri: str, data: bytes) -> None:
    if is_remote(uri):
        from beam_seg import storage

        storage.write_bytes(uri, data)
        return
    # Local files without beam_seg.storage, which would import Beam into the analytics.
    path = os.path.abspath(local_path(uri))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _check_output_root(out: str) -> None:
    if not is_remote(out) and not os.path.isdir(local_path(out)):
        raise UsageError(f"output directory {out!r} does not exist")


def _coverage_files(out: str, scratch: str) -> list[str]:
    """Local paths of the run's coverage Parquet files; remote ones are downloaded to `scratch`."""
    if not is_remote(out):
        pattern = os.path.join(glob.escape(local_path(out)), "coverage", "*", "*.parquet")
        return sorted(glob.glob(pattern))
    from beam_seg import storage

    uris = storage.list_files(join(out, "coverage", "*", "*.parquet"))
    paths = [os.path.join(scratch, f"{i:06d}.parquet") for i in range(len(uris))]
    with ThreadPoolExecutor(16) as pool:  # many small objects: latency-bound, not bandwidth
        list(pool.map(storage.download_file, uris, paths))
    return paths


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _label_set_from(name: str, class_names: tuple[str, ...]) -> LabelSet:
    """The label set a table was written with, colours included, from its Parquet metadata."""
    builtin = BUILTIN.get(name)
    if builtin is not None and builtin.names == class_names:
        return builtin
    colors = CITYSCAPES.colors if class_names == CITYSCAPES.names else voc_colormap(len(class_names))
    return LabelSet(name, class_names, tuple(colors))


def _read_label_set(name: str, parquet_path: str) -> LabelSet:
    schema = pq.read_schema(parquet_path)
    metadata = schema.metadata or {}
    if b"class_names" in metadata:
        names = tuple(metadata[b"class_names"].decode("utf-8").split("\t"))
    else:  # written by another tool: the column names are all there is
        names = tuple(c[len(FRACTION_PREFIX):] for c in schema.names
                      if c.startswith(FRACTION_PREFIX) and c != IGNORE_COLUMN)
    return _label_set_from(name, names)


@dataclass
class Coverage:
    """A DuckDB connection with a `coverage` view over one run's table, and its label sets."""

    con: duckdb.DuckDBPyConnection
    out: str
    label_sets: dict[str, LabelSet]  # most frames first

    def query(self, sql: str, params: dict | None = None) -> list[dict]:
        cursor = self.con.execute(sql, params) if params else self.con.execute(sql)
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


@contextlib.contextmanager
def open_coverage(out: str) -> Iterator[Coverage]:
    """Open a run's coverage table: a `coverage` view over every OUT/coverage/*/*.parquet."""
    _check_output_root(out)
    with tempfile.TemporaryDirectory(prefix="beam_seg_coverage_") as scratch:
        files = _coverage_files(out, scratch)
        if not files:
            raise UsageError(f"no coverage files match {join(out, 'coverage', '*', '*.parquet')}")
        con = duckdb.connect()
        try:
            file_list = "[" + ", ".join(_sql_string(f) for f in files) + "]"
            # union_by_name: runs into one OUT with different label sets have different columns.
            con.execute("CREATE VIEW coverage AS SELECT * FROM read_parquet("
                        f"{file_list}, union_by_name = true, filename = true)")
            rows = con.execute("SELECT label_set, min(filename), count(*) AS n FROM coverage "
                               "GROUP BY label_set ORDER BY n DESC, label_set").fetchall()
            sets = {name: _read_label_set(name, path) for name, path, _ in rows}
            yield Coverage(con, out, sets)
        finally:
            con.close()


def fraction_columns(label_set: LabelSet) -> list[str]:
    return [FRACTION_PREFIX + c for c in label_set.column_names()]


# --------------------------------------------------------------------------- aggregation


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


def coverage_over_time(cov: Coverage, input_ids: Sequence[str],
                       buckets: int = TIME_BUCKETS) -> dict[str, TimeSeries]:
    """Bucket each video's frames into at most `buckets` equal time slots, in SQL."""
    if not input_ids:
        return {}
    rows = cov.query(f"""
        WITH span AS (
            SELECT input_id, min(timestamp_s) AS t0,
                   greatest(max(timestamp_s) - min(timestamp_s), 1e-9) / {int(buckets)} AS width
            FROM coverage WHERE input_id IN (SELECT unnest($ids)) GROUP BY input_id)
        SELECT c.input_id, least(floor((c.timestamp_s - s.t0) / s.width), {int(buckets) - 1})::BIGINT
                   AS bucket,
               avg(c.timestamp_s) AS t, avg(COLUMNS('^{FRACTION_PREFIX}'))
        FROM coverage c JOIN span s USING (input_id)
        GROUP BY ALL ORDER BY 1, 2""", {"ids": list(input_ids)})
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["input_id"], []).append(row)
    series = {}
    for iid, items in grouped.items():
        columns = [k for k in items[0] if k.startswith(FRACTION_PREFIX) and items[0][k] is not None]
        series[iid] = TimeSeries(iid, np.array([r["t"] for r in items], float),
                                 {c: np.array([r[c] for r in items], float) for c in columns})
    return series


@dataclass(frozen=True)
class Thumbnail:
    input_id: str
    frame_index: int
    timestamp_s: float
    kind: str
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
            data = read_bytes(join(cov.out, row["overlay_uri"]))
            jpeg = thumbnail_jpeg(data)
        except (OSError, ValueError):  # missing or unreadable overlay: the report goes on
            continue
        thumbs.append(Thumbnail(row["input_id"], row["frame_index"], row["timestamp_s"],
                                row["kind"], jpeg))
    return thumbs


# --------------------------------------------------------------------------- formatting


def percent(value: float | None) -> str:
    if value is None:
        return "-"
    if 0 < value < 0.0005:
        return "<0.1%"  # present but tiny: not the same as absent
    return f"{100 * value:.1f}%"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(seconds, 60)
    if minutes >= 60:
        hours, minutes = divmod(minutes, 60)
        return f"{int(hours)}:{int(minutes):02d}:{secs:04.1f}"
    return f"{int(minutes)}:{secs:04.1f}"


def _class_name(label_set: LabelSet, column: str) -> str:
    if column == IGNORE_COLUMN:
        return "ignore"
    return label_set.names[fraction_columns(label_set).index(column)]


def _class_color(label_set: LabelSet, column: str) -> tuple[int, int, int]:
    if column == IGNORE_COLUMN:
        return IGNORE_COLOR
    return label_set.colors[fraction_columns(label_set).index(column)]


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """A plain aligned text table (ASCII only, so any terminal shows it)."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w)
                         for c, w, r in zip(cells, widths, right, strict=True)).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])


def input_table_rows(inputs: Sequence[InputSummary], mix: ClassMix) -> tuple[list[str], list[list[str]]]:
    """The per-input table of one label set, as strings (shared by the terminal and the HTML)."""
    label_set = mix.label_set
    main = mix.main_columns()
    headers = ["input", "kind", "frames", "duration", "size",
               *[_class_name(label_set, c) for c in main], "top classes"]
    rows = []
    for s in inputs:
        if s.label_set != label_set.name:
            continue
        top = ", ".join(f"{name} {percent(v)}" for name, v in top_classes(s.means, label_set))
        rows.append([s.input_id, s.kind, str(s.frames), format_duration(s.duration_s),
                     f"{s.width}x{s.height}", *[percent(s.means.get(c)) for c in main], top])
    return headers, rows


def terminal_report(inputs: Sequence[InputSummary], total_inputs: int, mixes: Sequence[ClassMix]) -> str:
    parts = []
    for mix in mixes:
        headers, rows = input_table_rows(inputs, mix)
        right = [False, False, True, True, True, *[True] * (len(headers) - 6), False]
        parts.append(f"label set {mix.label_set.name}: {mix.inputs} inputs, {mix.frames} frames "
                     f"(main-class columns: mean coverage over the input's frames)")
        parts.append(text_table(headers, rows, right))
    if total_inputs > len(inputs):
        parts.append(f"... and {total_inputs - len(inputs)} more inputs (the first {len(inputs)} shown)")
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- plots


def _rgb(color: tuple[int, int, int]) -> tuple[float, float, float]:
    return (color[0] / 255, color[1] / 255, color[2] / 255)


def _figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_coverage_over_time(series: TimeSeries, label_set: LabelSet, title: str) -> bytes:
    """A stacked area of class coverage over time in the label colours, as PNG bytes."""
    plt = _pyplot()
    columns = [c for c in [*fraction_columns(label_set), IGNORE_COLUMN]
               if c in series.fractions and series.fractions[c].max() > 0]
    times = series.times_s
    values = [series.fractions[c] for c in columns]
    if len(times) == 1:  # one bucket: draw a flat band rather than nothing
        times = np.array([times[0], times[0] + 1.0])
        values = [np.repeat(v, 2) for v in values]
    fig, ax = plt.subplots(figsize=(11, 3.6))
    ax.stackplot(times, values, colors=[_rgb(_class_color(label_set, c)) for c in columns],
                 labels=[_class_name(label_set, c) for c in columns], linewidth=0)
    ax.set_xlim(times[0], times[-1])
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("share of frame")
    ax.set_title(title, fontsize=11, loc="left")
    # Legend: the classes worth naming, top of the stack first, beside the plot.
    handles, labels = ax.get_legend_handles_labels()
    keep = [i for i, c in enumerate(columns) if series.fractions[c].mean() >= 0.005]
    keep = sorted(sorted(keep, key=lambda i: -series.fractions[columns[i]].mean())[:LEGEND_ENTRIES],
                  reverse=True)  # the largest classes only, so the legend fits beside the plot
    ax.legend([handles[i] for i in keep], [labels[i] for i in keep], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, title="≥ 0.5% of frame",
              title_fontsize=8)
    fig.subplots_adjust(left=0.07, right=0.82, top=0.88, bottom=0.15)
    return _figure_png(fig)


def plot_legend(label_sets: Sequence[LabelSet]) -> bytes:
    """Swatches for every class of the run's label sets (one section each), as PNG bytes."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    layout = []
    for ls in label_sets:
        cols = 4 if ls.num_classes <= 40 else 6
        layout.append((ls, cols, math.ceil(ls.num_classes / cols)))
    total_rows = sum(rows + 1.5 for _, _, rows in layout)
    fig = plt.figure(figsize=(11, 0.3 * total_rows + 0.3))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98))
    ax.set_xlim(0, 1)
    ax.set_ylim(total_rows, 0)
    ax.axis("off")
    y = 0.0
    for ls, cols, rows in layout:
        ax.text(0, y + 0.7, f"label set: {ls.name} ({ls.num_classes} classes)",
                fontsize=11, fontweight="bold", va="center")
        y += 1.5
        for i, (name, color) in enumerate(zip(ls.names, ls.colors, strict=True)):
            row, col = i % rows, i // rows  # fill column by column, so ids read downwards
            x = col / cols
            ax.add_patch(Rectangle((x, y + row + 0.15), 0.03, 0.7, facecolor=_rgb(color),
                                   edgecolor="#888", linewidth=0.5))
            ax.text(x + 0.037, y + row + 0.5, f"{i}  {name}", fontsize=9, va="center")
        y += rows
    return _figure_png(fig)


# --------------------------------------------------------------------------- HTML

_CSS = """
body { font: 14px/1.45 -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif;
       color: #222; margin: 0 auto; max-width: 1160px; padding: 16px 24px 48px; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: #555; margin: 0 0 8px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12.5px; }
th, td { padding: 4px 6px; border-bottom: 1px solid #e6e6e6; white-space: nowrap; }
td.wrap { white-space: normal; }
.nw { white-space: nowrap; }
.bar { display: inline-block; height: 10px; vertical-align: -1px; border-radius: 2px; }
th { background: #f4f4f4; text-align: left; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
.sw { display: inline-block; width: 11px; height: 11px; border: 1px solid #999;
      vertical-align: -1px; margin-right: 5px; }
img.plot { max-width: 100%; height: auto; display: block; }
figure { margin: 0 0 18px; }
.thumbs { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; }
.thumbs figure { margin: 0; }
.thumbs img { width: 100%; height: auto; display: block; border-radius: 3px; }
figcaption { font-size: 12px; color: #555; overflow-wrap: anywhere; margin-top: 3px; }
.note { color: #666; font-size: 12px; }
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _swatch(color: tuple[int, int, int]) -> str:
    return f'<span class="sw" style="background:#{color[0]:02x}{color[1]:02x}{color[2]:02x}"></span>'


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], styles: Sequence[str]) -> str:
    """Cells are HTML already (callers escape text); `styles` are per-column CSS classes."""
    def cls(style: str) -> str:
        return f' class="{style}"' if style else ""

    head = "".join(f"<th{cls(st)}>{h}</th>" for h, st in zip(headers, styles, strict=True))
    body = "".join("<tr>" + "".join(f"<td{cls(st)}>{c}</td>" for c, st in zip(row, styles, strict=True))
                   + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _bar(value: float, color: tuple[int, int, int], full_width_px: int = 160) -> str:
    width = max(1, round(value * full_width_px))
    return (f'<span class="bar" style="width:{width}px;'
            f'background:#{color[0]:02x}{color[1]:02x}{color[2]:02x}"></span>')


def _inputs_section(inputs: Sequence[InputSummary], mix: ClassMix) -> str:
    esc = html.escape
    headers, rows = input_table_rows(inputs, mix)
    main = mix.main_columns()
    head = [esc(headers[0]), "kind", "frames", "duration", "size",
            *[_swatch(_class_color(mix.label_set, c)) + esc(_class_name(mix.label_set, c)) for c in main],
            "top classes"]
    by_id = {s.input_id: s for s in inputs}
    body = []
    for row in rows:
        summary = by_id[row[0]]
        top = ", ".join(f'<span class="nw">{esc(name)} {esc(percent(v))}</span>'
                        for name, v in top_classes(summary.means, mix.label_set))
        body.append([f'<span title="{esc(summary.source_uri)}">{esc(row[0])}</span>',
                     *[esc(c) for c in row[1:-1]], top])
    styles = ["", "", "num", "num", "num", *["num"] * len(main), "wrap"]
    return _html_table(head, body, styles)


def _class_mix_section(mix: ClassMix) -> str:
    esc = html.escape
    columns = sorted((c for c in [*fraction_columns(mix.label_set), IGNORE_COLUMN]
                      if mix.mean.get(c, 0.0) > 0), key=lambda c: -mix.mean[c])
    top = max((mix.mean[c] for c in columns), default=1.0)
    body = [[_swatch(_class_color(mix.label_set, c)) + esc(_class_name(mix.label_set, c)),
             esc(percent(mix.mean[c])), _bar(mix.mean[c] / top, _class_color(mix.label_set, c)),
             esc(percent(mix.frames_over_1pct.get(c)))] for c in columns]
    return _html_table(["class", "mean share", "", "frames &gt; 1%"], body, ["", "num", "", "num"])


def html_report(out: str, inputs: Sequence[InputSummary], total_inputs: int, models: Sequence[str],
                mixes: Sequence[ClassMix], plots: Sequence[tuple[str, str, bytes]],
                legend_png: bytes, thumbnails: Sequence[Thumbnail], skipped_plots: int) -> str:
    """The whole report as one self-contained HTML page (images as data: URIs)."""
    esc = html.escape
    frames = sum(m.frames for m in mixes)
    several = len(mixes) > 1
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>beam_seg report: {esc(out)}</title><style>{_CSS}</style></head><body>",
        "<h1>beam_seg report</h1>",
        f'<p class="meta"><code>{esc(out)}</code> &middot; {total_inputs} inputs &middot; '
        f"{frames} frames &middot; model {esc(', '.join(models))} &middot; generated "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}</p>",
        "<h2>Inputs</h2>",
        '<p class="note">Class columns: mean share of the frame over the input\'s frames, for the '
        "classes that cover most of the run. Duration: the time the video's frames span. "
        "Hover an input for its source.</p>",
    ]
    for mix in mixes:
        if several:
            parts.append(f"<h3>label set {esc(mix.label_set.name)}</h3>")
        parts.append(_inputs_section(inputs, mix))
    if total_inputs > len(inputs):
        parts.append(f'<p class="note">&hellip; and {total_inputs - len(inputs)} more inputs '
                     f"(the first {len(inputs)} are listed).</p>")

    parts.append("<h2>Class mix of the run</h2>")
    parts.append('<p class="note">Mean share: the average over inputs of each input\'s mean '
                 "coverage (each input counts once). Frames &gt; 1%: the share of all frames in "
                 "which the class covers more than 1% of the picture.</p>")
    for mix in mixes:
        if several:
            parts.append(f"<h3>label set {esc(mix.label_set.name)}</h3>")
        parts.append(_class_mix_section(mix))

    if plots:
        parts.append("<h2>Coverage over time</h2>")
        for iid, caption, png in plots:
            parts.append(f'<figure><img class="plot" alt="class coverage over time of {esc(iid)}" '
                         f'src="{data_uri(png, "image/png")}"><figcaption>{esc(caption)}</figcaption>'
                         "</figure>")
        if skipped_plots:
            parts.append(f'<p class="note">{skipped_plots} more videos are not plotted '
                         "(raise --max-plots).</p>")
    parts.append("<h2>Label colours</h2>")
    parts.append(f'<img class="plot" alt="label colours" src="{data_uri(legend_png, "image/png")}">')
    if thumbnails:
        parts.append("<h2>Overlays</h2>")
        parts.append(f'<p class="note">The middle frame of each input (at most {MAX_THUMBNAILS}, '
                     'videos first).</p><div class="thumbs">')
        for t in thumbnails:
            where = f"frame {t.frame_index} at {t.timestamp_s:.2f} s" if t.kind == "video" else "image"
            parts.append(f'<figure><img alt="overlay of {esc(t.input_id)}" '
                         f'src="{data_uri(t.jpeg, "image/jpeg")}">'
                         f"<figcaption>{esc(t.input_id)} &middot; {where}</figcaption></figure>")
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- command


@dataclass(frozen=True)
class ReportPaths:
    html: str
    legend: str
    plots: dict[str, str]  # input id -> plot file


def build_report(out: str, html_path: str | None = None, max_plots: int = 50) -> tuple[str, ReportPaths]:
    """Write the plots and the HTML report of a run; return the terminal table and the paths."""
    report_dir = join(out, "report")
    html_path = html_path or join(report_dir, "report.html")
    with open_coverage(out) as cov:
        inputs, total = summarize_inputs(cov)
        mixes = class_mix(cov)
        models = [r["model"] for r in cov.query("SELECT DISTINCT model FROM coverage ORDER BY 1")]
        videos = cov.query("""
            SELECT input_id, any_value(label_set) AS label_set, any_value(source_uri) AS source_uri,
                   count(*) AS frames, min(timestamp_s) AS first_s, max(timestamp_s) AS last_s
            FROM coverage WHERE kind = 'video' GROUP BY input_id
            ORDER BY input_id""")
        plotted, skipped = videos[:max_plots], max(0, len(videos) - max_plots)
        series = coverage_over_time(cov, [v["input_id"] for v in plotted])
        plots, plot_paths = [], {}
        for v in plotted:
            iid = v["input_id"]
            length = format_duration(duration_s(v["frames"], v["first_s"], v["last_s"]))
            title = f"{iid}: {v['frames']} frames, {length}"
            png = plot_coverage_over_time(series[iid], cov.label_sets[v["label_set"]], title)
            # Ids are [A-Za-z0-9._-] by construction; re-check, as the table may come from elsewhere.
            path = join(report_dir, f"coverage_{re.sub(r'[^A-Za-z0-9._-]+', '_', iid)}.png")
            write_bytes(path, png)
            plots.append((iid, f"source: {v['source_uri']}", png))
            plot_paths[iid] = path
        legend_png = plot_legend(list(cov.label_sets.values()))
        legend_path = join(report_dir, "legend.png")
        write_bytes(legend_path, legend_png)
        thumbnails = load_thumbnails(cov)
        page = html_report(out, inputs, total, models, mixes, plots, legend_png, thumbnails, skipped)
    write_bytes(html_path, page.encode("utf-8"))
    return terminal_report(inputs, total, mixes), ReportPaths(html_path, legend_path, plot_paths)


def _command(args: argparse.Namespace) -> int:
    if args.max_plots < 0:
        raise UsageError("--max-plots must be 0 or more")
    table, paths = build_report(args.output, args.html, args.max_plots)
    print(table)
    print(f"\nplots: {join(args.output, 'report')} ({len(paths.plots)} coverage plots, legend.png)")
    print(f"HTML:  {paths.html}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="beam-seg report",
        description="Summarise a run's coverage table: a per-input table on the terminal, "
                    "coverage-over-time plots and a self-contained HTML report "
                    "(default OUT/report/).")
    parser.add_argument("output", metavar="OUT", help="the output root of a `beam-seg segment` run")
    parser.add_argument("--html", metavar="FILE", help="where to write the HTML report "
                        "(default OUT/report/report.html)")
    parser.add_argument("--max-plots", type=int, default=50, metavar="N",
                        help="plot at most N videos (default 50; all are in the tables)")
    return run_command(parser, sys.argv[1:] if argv is None else argv, _command)
