"""Per-frame class coverage and the one Arrow schema of the coverage table.

Layout: fixed identifying columns, then one `frac_<class>` float64 column per class of
the label set (e.g. `frac_road`, `frac_traffic_light`), so an analyst selects a class
by name in plain SQL (DuckDB or BigQuery) with no unnesting. Fractions of a frame sum
to 1 (ignore pixels, id 255, count in `frac_ignore`). After them come the region and
object columns of `regions.py` (`roi_<class>`, `n_<class>`, `largest_<class>`,
`lowest_<class>`), prefixed the same way.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from beam_seg.labels import LabelSet
from beam_seg.media.pixels import id_histogram
from beam_seg.tables.regions import region_fields

# Column -> (type, meaning). Documented in docs/outputs.md from this same table.
BASE_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("source_uri", pa.string(), "absolute URI of the input image or video"),
    ("input_id", pa.string(), "the input's output id (`<stem>-<hash8>`), names its files"),
    ("kind", pa.string(), "'image' or 'video'"),
    ("frame_index", pa.int64(), "0-based index of the frame in the source (0 for images)"),
    ("timestamp_s", pa.float64(), "presentation time of the frame in seconds (0 for images)"),
    ("width", pa.int32(), "frame width in pixels"),
    ("height", pa.int32(), "frame height in pixels"),
    ("model", pa.string(), "model name (registry name or file name)"),
    ("label_set", pa.string(), "label set of the class columns (cityscapes, pascal, …)"),
    ("label_uri", pa.string(), "label-map PNG, relative to the output root"),
    ("overlay_uri", pa.string(), "overlay image, relative to the output root"),
    ("confidence", pa.float64(), "mean top-class probability over the frame (null for models "
     "that give only class ids)"),
    ("flicker", pa.float64(), "share of pixels whose label differs from the previous frame's "
     "label map warped onto this one by optical flow (null for images, a video's first frame, "
     "after a scene cut, and with --temporal 0)"),
]
FRACTION_PREFIX = "frac_"
IGNORE_COLUMN = "frac_ignore"


def schema_for(label_set: LabelSet) -> pa.Schema:
    """The Arrow schema of the coverage table for one label set (`beam_seg.coverage_schema`).

    Args:
        label_set: the run's label set (e.g. `beam_seg.CITYSCAPES`).

    Returns:
        The identifying columns, one `frac_<class>` per class, `frac_ignore`, then the region
        and object columns; the metadata holds `label_set` and the tab-joined `class_names`.

    Example:
        >>> from beam_seg.labels import CITYSCAPES
        >>> schema_for(CITYSCAPES).field("frac_traffic_light").type
        DataType(double)
    """
    fields = [pa.field(name, dtype) for name, dtype, _ in BASE_COLUMNS]
    fields += [pa.field(FRACTION_PREFIX + c, pa.float64()) for c in label_set.column_names()]
    fields.append(pa.field(IGNORE_COLUMN, pa.float64()))
    fields += region_fields(label_set)
    metadata = {"label_set": label_set.name,
                "class_names": "\t".join(label_set.names)}
    return pa.schema(fields, metadata=metadata)


def class_counts(ids: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixel counts of ids 0..num_classes-1, then one count for everything else (ignore)."""
    counts = id_histogram(ids)
    return np.append(counts[:num_classes], counts[num_classes:].sum()).astype(np.int64)


def coverage_row(base: dict, counts: np.ndarray, label_set: LabelSet, regions: dict) -> dict:
    """A table row: the identifying columns, each class's fraction of the frame, then the
    frame's region and object columns (`regions.region_values`)."""
    fractions = (counts / counts.sum()).tolist()
    row = dict(base)
    for column, value in zip(label_set.column_names(), fractions[:-1], strict=True):
        row[FRACTION_PREFIX + column] = value
    row[IGNORE_COLUMN] = fractions[-1]
    row.update(regions)
    return row


def parquet_bytes(rows: list[dict], label_set: LabelSet) -> bytes:
    table = pa.Table.from_pylist(rows, schema=schema_for(label_set))
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()
