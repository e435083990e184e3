"""Region-of-interest shares and object blobs of a label map (no model: hand-made maps)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from matplotlib.path import Path as PolygonPath

from beam_seg.labels import CITYSCAPES, PASCAL, LabelSet
from beam_seg.tables import regions
from beam_seg.tables.regions import RegionSettings, find_objects, parse_roi, region_values

ROAD, PERSON, CAR, TRUCK, SKY = (CITYSCAPES.id_of(n) for n in ("road", "person", "car", "truck", "sky"))


def _counts(ids: np.ndarray, label_set: LabelSet) -> np.ndarray:
    hist = np.bincount(ids.ravel(), minlength=256)
    return np.append(hist[:label_set.num_classes], hist[label_set.num_classes:].sum())


def _centres_inside(width: int, height: int, polygons) -> np.ndarray:
    """An independent oracle: matplotlib's point-in-polygon on every pixel centre."""
    xs, ys = np.meshgrid((np.arange(width) + 0.5) / width, (np.arange(height) + 0.5) / height)
    points = np.column_stack([xs.ravel(), ys.ravel()])
    inside = np.zeros(len(points), bool)
    for poly in polygons:
        inside |= PolygonPath(poly).contains_points(points)
    return inside.reshape(height, width)


def _full_mask(width: int, height: int, polygons) -> np.ndarray:
    rows, cols, crop = regions.roi_mask(width, height, polygons)
    mask = np.zeros((height, width), bool)
    mask[rows, cols] = crop > 0
    return mask


# --------------------------------------------------------------------------- region


@pytest.mark.parametrize("size", [(96, 54), (131, 77), (40, 40)])
def test_the_default_trapezoid_holds_the_pixels_whose_centres_are_inside(size):
    width, height = size
    mask = _full_mask(width, height, regions.DEFAULT_ROI)
    expected = _centres_inside(width, height, regions.DEFAULT_ROI)
    assert mask.any() and (mask == expected).all()
    assert not mask[: int(0.6 * height)].any()  # nothing above the trapezoid's top edge
    assert mask[-1, width // 2]  # the bottom centre is in


def test_the_region_of_a_huge_frame_costs_a_few_bytes_a_pixel():
    """A 48 MP photo's region mask took float grids of the whole frame (1.6 GB at peak);
    now only boolean ones, and the mask is the same as the oracle's."""
    width, height = 8000, 6000
    regions.roi_mask.cache_clear()
    tracemalloc.start()
    try:
        regions.roi_mask(width, height, regions.DEFAULT_ROI)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * width * height, peak  # the float grids: 33 bytes a pixel
    mask = _full_mask(width, height, regions.DEFAULT_ROI)
    sample = np.s_[::97, ::89]  # the oracle on every pixel would itself take gigabytes
    xs, ys = np.meshgrid((np.arange(width)[sample[1]] + 0.5) / width,
                         (np.arange(height)[sample[0]] + 0.5) / height)
    inside = PolygonPath(regions.DEFAULT_ROI[0]).contains_points(np.column_stack([xs.ravel(), ys.ravel()]))
    assert mask[sample].any() and (mask[sample] == inside.reshape(xs.shape)).all()


def test_several_polygons_are_united():
    rois = parse_roi("0,0 0.5,0 0.5,0.5 0,0.5; 0.5,0.5 1,0.5 1,1 0.5,1")
    mask = _full_mask(8, 6, rois)
    expected = np.zeros((6, 8), bool)
    expected[:3, :4] = True  # centres of rows 0-2 (y < 0.5), columns 0-3 (x < 0.5)
    expected[3:, 4:] = True
    assert (mask == expected).all()


def test_roi_shares_count_the_classes_inside_only():
    ids = np.full((100, 200), SKY, np.uint8)
    ids[50:] = ROAD  # lower half road
    ids[80:, 90:110] = CAR  # a car in the middle of the bottom
    ids[55:, :20] = PERSON  # a person at the far left, outside the trapezoid
    row = region_values(ids, _counts(ids, CITYSCAPES), CITYSCAPES, RegionSettings())
    inside = _centres_inside(200, 100, regions.DEFAULT_ROI)
    total = inside.sum()
    assert row["roi_car"] == pytest.approx((inside & (ids == CAR)).sum() / total)
    assert row["roi_road"] == pytest.approx((inside & (ids == ROAD)).sum() / total)
    assert row["roi_person"] == 0 and row["roi_car"] > 0
    assert sum(v for k, v in row.items() if k.startswith("roi_")) == pytest.approx(1)


def test_roi_ignore_holds_ids_outside_the_label_set():
    ids = np.full((40, 40), 255, np.uint8)
    row = region_values(ids, _counts(ids, CITYSCAPES), CITYSCAPES, RegionSettings())
    assert row["roi_ignore"] == 1 and row["roi_road"] == 0


@pytest.mark.parametrize("text, reason", [
    ("0,0 1,0", "at least 3 points"),
    ("0,0 1,0 1,1.5", "outside 0..1"),
    ("0,0 1;0 1,1", "not an x,y point"),
    ("", "at least 3 points"),
])
def test_bad_roi_text_says_why(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_roi(text)


def test_roi_text_round_trips():
    rois = parse_roi("0.2,1 0.4,0.65 0.6,0.65 0.8,1; 0,0 0.1,0 0.1,0.1")
    assert parse_roi(regions.format_roi(rois)) == rois
    assert parse_roi(regions.format_roi(regions.DEFAULT_ROI)) == regions.DEFAULT_ROI


# --------------------------------------------------------------------------- objects


def test_blobs_are_counted_above_the_minimum_area_with_8_connectivity():
    ids = np.zeros((60, 80), np.uint8)
    ids[10:20, 10:20] = CAR  # 100 px
    ids[20:30, 20:30] = CAR  # 100 px touching the first at one corner: same blob (8-connected)
    ids[40:44, 60:64] = CAR  # 16 px
    ids[50:53, 5:8] = CAR  # 9 px: below a 10 px minimum
    found = find_objects(ids, CAR, min_area_px=10)
    assert found.count == 2
    assert found.largest_px == 200
    assert found.lowest_row == 43  # the 9 px blob reaching row 52 is not counted
    assert find_objects(ids, CAR, min_area_px=1).lowest_row == 52
    assert find_objects(ids, TRUCK, min_area_px=1) == regions.Objects(0, 0, None)


def test_object_columns_of_a_frame():
    ids = np.full((100, 100), ROAD, np.uint8)
    ids[30:50, 10:30] = CAR  # 400 px, reaches row 49
    ids[60:90, 70:80] = PERSON  # 300 px, reaches row 89
    ids[0, 0] = TRUCK  # one pixel: under the minimum area (0.0002 * 10000 = 2 px)
    row = region_values(ids, _counts(ids, CITYSCAPES), CITYSCAPES, RegionSettings())
    assert (row["n_car"], row["largest_car"], row["lowest_car"]) == (1, 400 / 10_000, 50 / 100)
    assert (row["n_person"], row["largest_person"], row["lowest_person"]) == (1, 0.03, 0.9)
    assert (row["n_truck"], row["largest_truck"], row["lowest_truck"]) == (0, 0.0, None)
    assert row["n_bus"] == 0 and row["lowest_bus"] is None


def test_a_class_with_too_few_pixels_is_skipped_but_counts_the_same():
    """The shortcut (fewer pixels than the minimum area in the whole frame) agrees with
    a full pass, for every area around the threshold."""
    rng = np.random.default_rng(3)
    ids = (rng.random((50, 50)) < 0.02).astype(np.uint8) * CAR  # scattered car pixels
    pixels = ids.size
    for min_area in (0.0001, 0.0004, 0.02, 0.05):
        settings = RegionSettings(min_object_area=min_area)
        row = region_values(ids, _counts(ids, CITYSCAPES), CITYSCAPES, settings)
        full = find_objects(ids, CAR, max(1, int(np.ceil(min_area * pixels))))
        assert row["n_car"] == full.count


def test_other_label_sets_map_object_classes_by_name():
    """PASCAL has person, car, bus, bicycle and 'motorbike', but no rider or truck."""
    ids = np.zeros((40, 40), np.uint8)
    ids[5:15, 5:15] = PASCAL.id_of("motorbike")
    ids[20:30, 20:30] = PASCAL.id_of("person")
    row = region_values(ids, _counts(ids, PASCAL), PASCAL, RegionSettings())
    assert row["n_motorcycle"] == 1 and row["n_person"] == 1 and row["n_car"] == 0
    for missing in ("rider", "truck"):  # unknown to the label set: null, not zero
        assert row[f"n_{missing}"] is None and row[f"largest_{missing}"] is None
    assert "roi_background" in row and "roi_road" not in row


def test_ade20k_style_names_are_matched_on_their_first_synonym():
    names = ("other", "person, individual, someone", "car, auto, automobile", "minibike, motorbike")
    label_set = LabelSet("ade-like", names, ((0, 0, 0),) * 4)
    assert dict(regions.object_class_ids(label_set)) == {
        "person": 1, "rider": None, "car": 2, "truck": None, "bus": None,
        "motorcycle": 3, "bicycle": None}


def test_the_fields_match_the_values():
    ids = np.zeros((30, 30), np.uint8)
    for label_set in (CITYSCAPES, PASCAL):
        row = region_values(ids, _counts(ids, label_set), label_set, RegionSettings())
        assert [f.name for f in regions.region_fields(label_set)] == list(row)
