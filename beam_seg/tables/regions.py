"""Where things are in a frame: the classes inside a region ahead of the car, and the
objects (connected blobs) of the people and vehicle classes.

Both are computed from the uint8 label map that the write step already holds, next to the
class histogram, so they cost a fraction of a millisecond per frame: the region is counted
with one masked histogram over its bounding box (its mask is rasterised once per frame
size), and each object class present in the frame gets one connected-components pass over
the bounding box of its pixels only.

The columns are prefixed like `frac_<class>` (`roi_road`, `n_car`, `largest_car`,
`lowest_car`), so that they stay plain columns in DuckDB and BigQuery.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa

from beam_seg.labels import LabelSet, sql_identifier

Point = tuple[float, float]
Polygon = tuple[Point, ...]

ROI_PREFIX = "roi_"
COUNT_PREFIX = "n_"
LARGEST_PREFIX = "largest_"
LOWEST_PREFIX = "lowest_"
ROI_IGNORE_COLUMN = "roi_ignore"

# A trapezoid over the lower centre of the frame: the lane ahead and its neighbours up
# to about the horizon of a forward-facing dashcam (x, y relative to width and height,
# y downwards).
DEFAULT_ROI: tuple[Polygon, ...] = (((0.2, 1.0), (0.4, 0.65), (0.6, 0.65), (0.8, 1.0)),)
DEFAULT_MIN_OBJECT_AREA = 0.0002  # of the frame: 104 px at 960x540, 419 px at 2048x1024

# The classes counted as objects, by Cityscapes name, and the names other label sets give
# them (after `sql_identifier`: PASCAL's `motorbike`, ADE20K's `minibike, motorbike`).
OBJECT_CLASSES = ("person", "rider", "car", "truck", "bus", "motorcycle", "bicycle")
OBJECT_ALIASES = {"motorcycle": ("motorbike", "minibike")}


@dataclass(frozen=True)
class RegionSettings:
    """How the region and object columns are measured (both shape the outputs)."""

    roi: tuple[Polygon, ...] = DEFAULT_ROI
    min_object_area: float = DEFAULT_MIN_OBJECT_AREA


# --------------------------------------------------------------------------- the region


def parse_roi(text: str) -> tuple[Polygon, ...]:
    """`x,y x,y x,y ...` per polygon, polygons separated by `;`, coordinates 0..1.

    `0.2,1 0.4,0.65 0.6,0.65 0.8,1` is the default trapezoid; `0,0.5 1,0.5 1,1 0,1` the lower
    half. Raises ValueError with the reason (argparse turns it into a usage error).
    """
    polygons = []
    for part in text.split(";"):
        points = []
        for pair in part.split():
            match = re.fullmatch(r"([0-9.eE+-]+),([0-9.eE+-]+)", pair)
            if not match:
                raise ValueError(f"{pair!r} is not an x,y point")
            x, y = float(match.group(1)), float(match.group(2))
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"point {pair} is outside 0..1 (coordinates are relative)")
            points.append((x, y))
        if len(points) < 3:
            raise ValueError("a polygon needs at least 3 points")
        polygons.append(tuple(points))
    return tuple(polygons)


def format_roi(polygons: tuple[Polygon, ...]) -> str:
    """The `--roi` text of some polygons (parse_roi's inverse)."""
    return "; ".join(" ".join(f"{x:g},{y:g}" for x, y in poly) for poly in polygons)


@functools.lru_cache(maxsize=4)  # one per frame size: a video's, or a folder's few
def roi_mask(width: int, height: int, polygons: tuple[Polygon, ...]) -> tuple[slice, slice, np.ndarray]:
    """The region's pixels as (rows, cols, mask) of its bounding box; mask is 0/255 uint8.

    A pixel is in the region when its centre ((col + 0.5) / width, (row + 0.5) / height) lies
    inside one of the polygons (even-odd rule). Computed in numpy once per frame size and
    cached, so it is exact and the same on every machine, unlike a rasteriser's edge rules.
    """
    xs = (np.arange(width) + 0.5) / width
    ys = (np.arange(height) + 0.5) / height
    inside = np.zeros((height, width), bool)
    for poly in polygons:
        inside |= _inside_polygon(xs, ys, poly)
    rows = np.flatnonzero(inside.any(axis=1))
    cols = np.flatnonzero(inside.any(axis=0))
    if rows.size == 0:
        return slice(0, 0), slice(0, 0), np.zeros((0, 0), np.uint8)
    r, c = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    return r, c, np.ascontiguousarray(inside[r, c].astype(np.uint8) * 255)


def _inside_polygon(xs: np.ndarray, ys: np.ndarray, poly: Polygon) -> np.ndarray:
    """Even-odd test of every (x, y) on the grid xs × ys against one polygon (ray to +x).
    An edge's crossing depends on the row alone, so it is worked out once per row and only
    the boolean comparisons take the whole grid (a float grid took 1.6 GB at 48 MP)."""
    x, y = xs[None, :], ys[:, None]
    inside = np.zeros((len(ys), len(xs)), bool)
    n = len(poly)
    for i in range(n):
        (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % n]
        if y1 == y2:
            continue  # a horizontal edge is never crossed by a horizontal ray
        crosses = (y1 > y) != (y2 > y)
        x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        left_of = x < x_at
        left_of &= crosses
        inside ^= left_of
    return inside


def roi_counts(ids: np.ndarray, polygons: tuple[Polygon, ...]) -> np.ndarray:
    """Pixel count of each id 0..255 inside the region (int64)."""
    height, width = ids.shape
    rows, cols, mask = roi_mask(width, height, polygons)
    if mask.size == 0:
        return np.zeros(256, np.int64)
    crop = np.ascontiguousarray(ids[rows, cols])
    return cv2.calcHist([crop], [0], mask, [256], [0, 256]).ravel().astype(np.int64)


# --------------------------------------------------------------------------- objects


@dataclass(frozen=True)
class Objects:
    """One class's blobs in one frame (those of at least the minimum area)."""

    count: int
    largest_px: int  # 0 when count is 0
    lowest_row: int | None  # the largest row index any counted blob reaches; None when none


def find_objects(ids: np.ndarray, class_id: int, min_area_px: int) -> Objects:
    """Connected blobs (8-connectivity) of one class, counted when they have >= min_area_px pixels.

    Only the bounding box of the class's pixels is labelled, which makes the pass several
    times cheaper on a dashcam frame than labelling the whole map.
    """
    mask = cv2.compare(ids, class_id, cv2.CMP_EQ)
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0:
        return Objects(0, 0, None)
    crop = np.ascontiguousarray(mask[y:y + h, x:x + w])
    _, _, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
        crop, 8, cv2.CV_32S, cv2.CCL_BBDT)
    blobs = stats[1:]  # row 0 is the background
    kept = blobs[blobs[:, cv2.CC_STAT_AREA] >= max(1, min_area_px)]
    if len(kept) == 0:
        return Objects(0, 0, None)
    bottoms = kept[:, cv2.CC_STAT_TOP] + kept[:, cv2.CC_STAT_HEIGHT] - 1
    return Objects(len(kept), int(kept[:, cv2.CC_STAT_AREA].max()), int(y + bottoms.max()))


@functools.lru_cache(maxsize=8)
def object_class_ids(label_set: LabelSet) -> tuple[tuple[str, int | None], ...]:
    """Each object class with its id in this label set, found by name (None: the set lacks it)."""
    by_name: dict[str, int] = {}
    for class_id, name in enumerate(label_set.names):
        by_name.setdefault(sql_identifier(name), class_id)
    ids = []
    for cls in OBJECT_CLASSES:
        found = [by_name[n] for n in (cls, *OBJECT_ALIASES.get(cls, ())) if n in by_name]
        ids.append((cls, found[0] if found else None))
    return tuple(ids)


# --------------------------------------------------------------------------- columns


def region_fields(label_set: LabelSet) -> list[pa.Field]:
    """The table's region and object columns, after the `frac_` columns."""
    fields = [pa.field(ROI_PREFIX + c, pa.float64()) for c in label_set.column_names()]
    fields.append(pa.field(ROI_IGNORE_COLUMN, pa.float64()))
    for cls in OBJECT_CLASSES:
        fields += [pa.field(COUNT_PREFIX + cls, pa.int32()),
                   pa.field(LARGEST_PREFIX + cls, pa.float64()),
                   pa.field(LOWEST_PREFIX + cls, pa.float64())]
    return fields


def region_values(ids: np.ndarray, counts: np.ndarray, label_set: LabelSet,
                  settings: RegionSettings) -> dict:
    """The region and object columns of one frame.

    `counts` is the frame's class histogram (num_classes counts, then ignore) that the
    coverage row is made from: an object class with fewer pixels than the minimum area
    in the whole frame cannot hold a blob that large, so it is skipped without a pass.
    """
    height, width = ids.shape
    pixels = width * height
    row: dict = {}
    inside = roi_counts(ids, settings.roi)
    n = label_set.num_classes
    total = int(inside.sum())
    shares = inside / total if total else np.zeros(256)
    for column, share in zip(label_set.column_names(), shares[:n].tolist(), strict=True):
        row[ROI_PREFIX + column] = share
    row[ROI_IGNORE_COLUMN] = float(shares[n:].sum())
    min_area_px = max(1, int(np.ceil(settings.min_object_area * pixels)))
    for cls, class_id in object_class_ids(label_set):
        if class_id is None:  # the label set has no such class: unknown, not zero
            found: Objects | None = None
        elif counts[class_id] < min_area_px:
            found = Objects(0, 0, None)
        else:
            found = find_objects(ids, class_id, min_area_px)
        row[COUNT_PREFIX + cls] = None if found is None else found.count
        row[LARGEST_PREFIX + cls] = None if found is None else found.largest_px / pixels
        row[LOWEST_PREFIX + cls] = (None if found is None or found.lowest_row is None
                                    else (found.lowest_row + 1) / height)
    return row
