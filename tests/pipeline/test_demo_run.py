"""End to end on the DirectRunner with the real default model and real footage."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from beam_seg import naming
from beam_seg.labels import CITYSCAPES
from beam_seg.media import video
from beam_seg.pipeline import temporal

from conftest import DATA, decode_all
from pipeline_helpers import coverage, label_maps, segment

pytestmark = pytest.mark.real_model  # the second tier: runs the real model

UDACITY = DATA / "videos" / "udacity_solidWhiteRight.mp4"  # cli_runs.DEMO_CLIP
AACHEN = DATA / "videos" / "cityscapes_aachen_seq0001_512x256_17fps.mp4"
DASHCAM = DATA / "images" / "dashcam"


@pytest.fixture(scope="module")
def udacity_run(demo_run):
    """The demo clip and a still through the command at its defaults (conftest's `demo_run`)."""
    return demo_run.code, demo_run.out


@pytest.mark.serial  # reads the demo run that test_progress times
def test_video_output_matches_the_source(udacity_run):
    code, out = udacity_run
    assert code == 0
    iid = naming.input_id(str(UDACITY))
    info = video.probe(str(out / "videos" / f"{iid}.mp4"))
    assert (info.frame_count, info.fps, info.width, info.height) == (221, Fraction(25), 960, 540)
    assert info.codec == "h264"
    assert info.has_audio
    assert sorted(p.name for p in (out / "videos").iterdir()) == [f"{iid}.mp4"]


@pytest.mark.serial  # reads the demo run that test_progress times
def test_video_frames_are_the_overlays_in_order(udacity_run):
    """The segment videos are encoded from the overlay pixels: same colours, same frames,
    with the legend (on by default) in the top-left corner of the video only."""
    _, out = udacity_run
    iid = naming.input_id(str(UDACITY))
    frames = decode_all(out / "videos" / f"{iid}.mp4")
    for index in (0, 59, 60, 150, 220):  # either side of the 60-frame segment joins
        overlay = np.asarray(Image.open(out / "overlays" / iid / f"{index:06d}.jpg"), dtype=np.int16)
        frame = frames[index].astype(np.int16)
        diff = np.abs(frame[:, 240:] - overlay[:, 240:]).mean(axis=(0, 1))  # beside the legend
        assert (diff < 6).all(), (index, diff)  # lossy codecs only; a swapped channel or frame is far off
        assert np.abs(frame[:20, :60] - overlay[:20, :60]).mean() > 20  # the legend's dark box
    neighbour = np.asarray(Image.open(out / "overlays" / iid / "000100.jpg"), dtype=np.int16)
    assert np.abs(frames[0].astype(np.int16) - neighbour).mean() > 6


@pytest.mark.serial  # reads the demo run that test_progress times
def test_coverage_table_has_one_row_per_frame(udacity_run):
    _, out = udacity_run
    rows = [r for r in coverage(out) if r["source_uri"] == str(UDACITY)]
    assert [r["frame_index"] for r in rows] == list(range(221))
    assert rows[25]["timestamp_s"] == pytest.approx(1.0)
    fraction_columns = [c for c in rows[0] if c.startswith("frac_")]
    assert "frac_road" in fraction_columns and "frac_traffic_light" in fraction_columns
    for row in rows:
        assert math.isclose(sum(row[c] for c in fraction_columns), 1.0, abs_tol=1e-9)
        assert (out / row["label_uri"]).is_file() and (out / row["overlay_uri"]).is_file()
        assert (row["width"], row["height"], row["model"]) == (960, 540, "cityscapes-edgetpu-slim")
    assert np.mean([r["frac_road"] for r in rows]) > 0.1  # a highway: road is everywhere


@pytest.mark.serial  # reads the demo run that test_progress times
def test_label_pngs_hold_class_ids_of_the_label_set(udacity_run):
    _, out = udacity_run
    maps = label_maps(out)
    assert len(maps) == 222
    for ids in maps.values():
        assert ids.max() < CITYSCAPES.num_classes
    any_png = next((out / "labels").rglob("*.png"))
    image = Image.open(any_png)
    assert image.mode == "P"  # one channel, colours from the palette


@pytest.mark.serial  # reads the demo run that test_progress times
def test_image_outputs_and_overlay_blend(udacity_run):
    _, out = udacity_run
    iid = naming.input_id(str(DASHCAM / "lanes_solidWhiteCurve.jpg"))
    ids = label_maps(out)[f"labels/{iid}/000000.png"]
    source = np.asarray(Image.open(DASHCAM / "lanes_solidWhiteCurve.jpg").convert("RGB")).astype(int)
    overlay = np.asarray(Image.open(out / "overlays" / iid / "000000.jpg")).astype(int)
    expected = (source + CITYSCAPES.palette[ids].astype(int)) / 2
    assert np.abs(overlay - expected).mean() < 4  # JPEG noise only


def test_worker_layouts_and_batch_sizes_give_the_same_label_maps(tmp_path):
    """Threads with an interpreter each (default), processes, and one shared interpreter
    with batches that leave a remainder all label every frame the same."""
    inputs = [AACHEN, DASHCAM / "vehicle_test2.jpg"]
    assert segment(inputs, tmp_path / "default", "--segment-frames", "8") == 0
    assert segment(inputs, tmp_path / "multi", "--segment-frames", "8",
                   "--direct_running_mode=multi_processing", "--direct_num_workers=2") == 0
    assert segment(inputs, tmp_path / "shared", "--segment-frames", "8", "--interpreters", "1",
                   "--threads", "2", "--batch-size", "3") == 0
    default = label_maps(tmp_path / "default")
    assert len(default) == 31
    for other in ("multi", "shared"):
        maps = label_maps(tmp_path / other)
        assert maps.keys() == default.keys(), other
        for name in default:
            np.testing.assert_array_equal(default[name], maps[name], err_msg=f"{other}: {name}")


def test_other_label_sets_and_options_run_through_the_same_command(tmp_path):
    dog = DATA / "images" / "coral_dog_segmentation.bmp"
    assert segment([dog], tmp_path, "--model", "pascal-mnv2-float", "--overlay-format", "png",
                   "--alpha", "1") == 0
    iid = naming.input_id(str(dog))
    (row,) = coverage(tmp_path)
    assert row["label_set"] == "pascal" and row["frac_dog"] > 0.2
    ids = label_maps(tmp_path)[f"labels/{iid}/000000.png"]
    overlay = np.asarray(Image.open(tmp_path / row["overlay_uri"]))
    from beam_seg.labels import PASCAL
    np.testing.assert_array_equal(overlay, PASCAL.palette[ids])  # alpha 1: pure label colours


def test_every_nth_frame(tmp_path, capsys):
    assert segment([AACHEN], tmp_path, "--every-nth-frame", "4", "--segment-frames", "7") == 0
    rows = coverage(tmp_path)
    assert [r["frame_index"] for r in rows] == [0, 4, 8, 12, 16, 20, 24, 28]
    source_frames = video.probe(str(AACHEN)).frame_count
    # 7-frame units of the 30 source frames keep 0 4 | 8 12 | 16 20 | 24 | 28; balanced fuses
    # K=1 neighbour each side, so a unit also decodes `frames_before(1)` kept frames before
    # it (as many as there are) and the K=1 after it, counted apart
    units = [[0, 4], [8, 12], [16, 20], [24], [28]]
    kept = [i for unit in units for i in unit]
    context = sum(min(temporal.frames_before(1), kept.index(unit[0]))
                  + min(1, len(kept) - 1 - kept.index(unit[-1])) for unit in units)
    assert (f"8 segmented ({source_frames} decoded, and {context} more as temporal fusion's neighbours)"
            in capsys.readouterr().out)
    info = video.probe(str(tmp_path / "videos" / f"{naming.input_id(str(AACHEN))}.mp4"))
    assert info.frame_count == 8 and info.fps == Fraction(17, 4)
