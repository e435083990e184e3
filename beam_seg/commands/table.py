"""Opening a run's tables: DuckDB views over its coverage (and events) Parquet files, local or
on an object store, and the label sets the coverage was written with.

DuckDB has no offline `gs://` reader, so remote files are first copied to a scratch
directory through `beam_seg.storage` (Beam's FileSystems, imported only then).
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import pyarrow.parquet as pq

from beam_seg import storage
from beam_seg.commands.commands import UsageError, check_output_root
from beam_seg.labels import BUILTIN, CITYSCAPES, LabelSet, sql_string, voc_colormap
from beam_seg.tables.coverage import FRACTION_PREFIX, IGNORE_COLUMN
from beam_seg.tables.events import EVENT_SCHEMA

IGNORE_COLOR = (128, 128, 128)


def table_files(out: str, table: str, scratch: str) -> list[str]:
    """Local paths of the Parquet files of OUT/<table>/ (`coverage/*/*.parquet`,
    `events/*.parquet`); remote ones are downloaded to `scratch` first."""
    parts = ("coverage", "*", "*.parquet") if table == "coverage" else (table, "*.parquet")
    if storage.is_local(out):
        return sorted(glob.glob(os.path.join(glob.escape(storage.local_path(out)), *parts)))
    uris = storage.list_files(storage.join(out, *parts))
    paths = [os.path.join(scratch, f"{table}-{i:06d}.parquet") for i in range(len(uris))]
    with ThreadPoolExecutor(16) as pool:  # many small objects: latency-bound, not bandwidth
        list(pool.map(storage.download_file, uris, paths))
    return paths


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
    """A DuckDB connection with `coverage` and `events` views over one run, and its label sets."""

    con: duckdb.DuckDBPyConnection
    out: str
    label_sets: dict[str, LabelSet]  # most frames first

    def columns(self) -> list[str]:
        """The coverage view's column names (the union over its files)."""
        return [d[0] for d in self.con.execute("SELECT * FROM coverage LIMIT 0").description]

    def query(self, sql: str, params: dict | None = None) -> list[dict]:
        cursor = self.con.execute(sql, params) if params else self.con.execute(sql)
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _file_list(paths: list[str]) -> str:
    return "[" + ", ".join(sql_string(p) for p in paths) + "]"


@contextlib.contextmanager
def open_coverage(out: str) -> Iterator[Coverage]:
    """Open a run: a `coverage` view over every OUT/coverage/*/*.parquet and an `events` view
    over OUT/events/*.parquet (empty when the run has none, e.g. made before events existed)."""
    check_output_root(out)
    with tempfile.TemporaryDirectory(prefix="beam_seg_coverage_") as scratch:
        coverage_files = table_files(out, "coverage", scratch)
        if not coverage_files:
            raise UsageError(f"no coverage files match {storage.join(out, 'coverage', '*', '*.parquet')}")
        event_files = table_files(out, "events", scratch)
        con = duckdb.connect()
        try:
            # union_by_name: runs into one OUT with different label sets have different columns.
            con.execute("CREATE VIEW coverage AS SELECT * FROM read_parquet("
                        f"{_file_list(coverage_files)}, union_by_name = true, filename = true)")
            # file_row_number keeps each file's order (start, then class id) for listings
            if event_files:
                con.execute("CREATE VIEW events AS SELECT * FROM read_parquet("
                            f"{_file_list(event_files)}, union_by_name = true, file_row_number = true)")
            else:
                con.register("no_events", EVENT_SCHEMA.empty_table())
                con.execute("CREATE VIEW events AS SELECT *, 0::BIGINT AS file_row_number FROM no_events")
            rows = con.execute("SELECT label_set, min(filename), count(*) AS n FROM coverage "
                               "GROUP BY label_set ORDER BY n DESC, label_set").fetchall()
            sets = {name: _read_label_set(name, path) for name, path, _ in rows}
            yield Coverage(con, out, sets)
        finally:
            con.close()


def fraction_columns(label_set: LabelSet) -> list[str]:
    return [FRACTION_PREFIX + c for c in label_set.column_names()]


def class_name(label_set: LabelSet, column: str) -> str:
    """The display name of a `frac_` column."""
    if column == IGNORE_COLUMN:
        return "ignore"
    return label_set.names[fraction_columns(label_set).index(column)]


def class_color(label_set: LabelSet, column: str) -> tuple[int, int, int]:
    if column == IGNORE_COLUMN:
        return IGNORE_COLOR
    return label_set.colors[fraction_columns(label_set).index(column)]

