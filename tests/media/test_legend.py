"""The legend: a key of the classes present, drawn where users look (the segmented video by
default, every overlay on request), never on the label PNGs."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from fakes import FakeHandler

from beam_seg import naming
from beam_seg.config import RunConfig
from beam_seg.labels import CITYSCAPES
from beam_seg.media import render
from beam_seg.pipeline.transforms import SegmentInputs

from conftest import decode_all, make_index_video


def test_the_legend_lists_the_classes_above_the_least_share_in_label_set_order():
    counts = np.zeros(19, np.int64)
    counts[[13, 0, 11, 5]] = [500, 9000, 300, 1]  # car, road, person, a one-pixel pole
    assert render.legend_classes(counts, 19, min_share=0.01) == [0, 11, 13]
    assert render.legend_classes(np.zeros(19), 19) == []
    assert render.legend_name("building, edifice") == "building"


def test_a_video_legend_takes_a_class_at_half_a_percent_and_keeps_it_through_short_dips():
    tracker = render.LegendTracker(3, hold_frames=3)
    frame = 10_000

    def shares(car: float) -> np.ndarray:  # road, car, and the ignore bin
        return np.array([frame * (1 - car), frame * car, 0])

    seen = [tracker.update(shares(car)) for car in
            (0.003, 0.006, 0.003, 0.001, 0.001, 0.003, 0.001, 0.001, 0.001, 0.004)]
    assert seen == [[0],                  # 0.3%: not enough to join
                    [0, 1], [0, 1],       # 0.6% joins; 0.3% stays above the exit share
                    [0, 1], [0, 1],       # under it for two frames: still held
                    [0, 1],               # back above the exit share
                    [0, 1], [0, 1], [0],  # three frames under it: gone
                    [0]]                  # 0.4% is not enough to join again


@pytest.mark.parametrize("width,height", [(960, 540), (1920, 1080)])
def test_the_legend_is_drawn_in_the_top_left_corner_only_and_grows_with_the_frame(width, height):
    frame = np.full((height, width, 3), 200, np.uint8)
    drawn = render.draw_legend(frame.copy(), [0, 11, 13], CITYSCAPES.names, CITYSCAPES.palette)
    changed = np.argwhere((drawn != frame).any(axis=2))
    (top, left), (bottom, right) = changed.min(axis=0), changed.max(axis=0)
    assert (top, left) == (0, 0)
    # three rows: readable text (rows at least 2.5% of the height), still a small corner
    assert 3 * 0.025 * height <= bottom < 0.25 * height and right < 0.25 * width
    # each class's colour is in the box (its swatch), so the key matches the overlay
    for class_id in (0, 11, 13):
        assert (drawn[: bottom + 1, : right + 1] == CITYSCAPES.palette[class_id]).all(axis=2).any()
    assert render.draw_legend(frame.copy(), [], CITYSCAPES.names, CITYSCAPES.palette).tobytes() \
        == frame.tobytes()


def _files(root: Path, folder: str) -> dict[str, bytes]:
    base = root / folder
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One clip and one still through the pipeline (fake model) with each --legend value."""
    tmp = tmp_path_factory.mktemp("legend")
    clip = make_index_video(tmp / "clip.mp4", 6, width=320, height=180)
    still = tmp / "still.png"
    from PIL import Image

    Image.fromarray(np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (180, 1, 3))).save(still)
    outs = {}
    with TestPipeline() as p:  # one pipeline, one branch per --legend value
        inputs = p | beam.Create([str(clip), str(still)])
        for place in render.LEGEND_PLACES:
            cfg = RunConfig(output=str(tmp / place), quality="fast", legend=place)
            handler = FakeHandler(cfg.model, cfg.labels, 1, cfg.inference_settings(), interpreters=1)
            _ = inputs | place >> SegmentInputs(cfg, handler)
            outs[place] = tmp / place
    return outs, naming.input_id(str(clip))


def test_label_pngs_are_byte_identical_with_and_without_the_legend(runs):
    outs, _ = runs
    labels = {place: _files(out, "labels") for place, out in outs.items()}
    assert len(labels["none"]) == 7
    assert labels["video"] == labels["none"] == labels["all"]


def test_the_video_carries_the_legend_and_the_overlay_files_only_on_request(runs):
    outs, clip_id = runs
    assert _files(outs["video"], "overlays") == _files(outs["none"], "overlays")
    assert _files(outs["all"], "overlays") != _files(outs["none"], "overlays")
    plain = decode_all(outs["none"] / "videos" / f"{clip_id}.mp4")
    keyed = decode_all(outs["video"] / "videos" / f"{clip_id}.mp4")
    assert len(plain) == len(keyed) == 6
    for a, b in zip(plain, keyed, strict=True):
        diff = np.abs(a.astype(int) - b.astype(int)).mean(axis=2)
        assert diff[:20, :20].mean() > 40  # the key's darkened box
        assert diff[120:, 200:].mean() < 2  # the rest of the frame is the same overlay


def test_the_legend_shapes_outputs_so_a_rerun_with_another_value_is_not_mixed(tmp_path):
    a = RunConfig(output=str(tmp_path))
    assert a.legend == "video"
    assert RunConfig(output=str(tmp_path), legend="none").fingerprint != a.fingerprint
