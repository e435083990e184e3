"""Scores out of the models and their merging: flatbuffer surgery, Hann-weighted windows,
labels from score grids, presets chosen from the source size."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

from beam_seg.media import flow
from beam_seg.models.scoring import QUALITY_PRESETS
from beam_seg.models.surgery import expose_logits
from beam_seg.models.tiling import (
    MAX_WINDOWS,
    Preset,
    ScoreMerger,
    TilePlan,
    TileSettings,
    plan_tiles,
)
from beam_seg.scores import ScoreGrid, hann, labels_from_scores, sticky_labels

from conftest import DATA, MODELS


def _run(content: bytes, rgb: np.ndarray) -> tuple[np.ndarray, dict]:
    interpreter = Interpreter(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], rgb[None])
    interpreter.invoke()
    out = interpreter.get_output_details()[0]
    return interpreter.get_tensor(out["index"])[0], out


def test_the_default_model_gives_its_logits_and_they_agree_with_its_argmax():
    content = (MODELS / "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite").read_bytes()
    exposed = expose_logits(content)
    assert exposed is not None and exposed.align_corners
    assert exposed.tensor_name.startswith("logits/semantic/BiasAdd")
    rgb = np.asarray(Image.open(DATA / "images" / "coral_cityscapes_segmentation.bmp").convert("RGB"))
    ids, _ = _run(content, rgb)
    logits, details = _run(exposed.model, rgb)
    assert logits.shape == (33, 33, 19) and details["quantization"][0] > 0
    # the model's own resize: grid point j on input pixel 16 j; compare ids there
    assert np.mean(np.argmax(logits, -1) == ids[::16, ::16]) > 0.95


def test_a_model_that_already_outputs_logits_is_left_alone():
    assert expose_logits((MODELS / "deeplabv3_257_mv_gpu.tflite").read_bytes()) is None


def test_hann_weights_are_positive_symmetric_and_peak_in_the_middle():
    w = hann(33)
    assert (w > 0).all() and np.allclose(w, w[::-1]) and w.argmax() == 16 and w[0] < 0.01


def test_overlapping_windows_blend_without_a_step():
    """Two windows that disagree hand over smoothly across their overlap: no jump larger
    than a small share of their difference between neighbouring grid points."""
    plan = TilePlan(16 * 24 + 1, 17, 17, 17, ((0, 0), (16 * 8, 0)))
    merger = ScoreMerger(plan, step=16, offset=0.0)
    merger.add((0, 0), np.dstack([np.full((2, 17), 0.9), np.full((2, 17), 0.1)]).astype(np.float32))
    merger.add((128, 0), np.dstack([np.full((2, 17), 0.2), np.full((2, 17), 0.8)]).astype(np.float32))
    row = merger.result()[0, :, 0]
    assert len(row) == 25
    assert row[0] == pytest.approx(0.9) and row[-1] == pytest.approx(0.2)
    assert (np.diff(row) <= 1e-6).all()  # monotonic from one window to the other
    assert np.abs(np.diff(row)).max() < 0.7 * 0.25


def test_labels_follow_bilinear_log_probabilities():
    xs = np.array([0.0, 10.0, 20.0])
    p0 = np.array([0.9, 0.6, 0.05], np.float32)
    probs = np.stack([p0, 1 - p0], -1)[None].repeat(2, 0)  # 2 x 3 x 2
    grid = ScoreGrid(probs, 0.0, 0.0, 10.0, 10.0)
    labels = labels_from_scores(grid, 21, 11)
    margin = np.interp(np.arange(21), xs, np.log(p0) - np.log(1 - p0))
    assert (labels[5] == np.where(margin > 0, 0, 1)).all()


def test_a_prior_wins_only_where_its_class_is_within_the_bonus_of_the_best():
    # Two classes along a row: class 0 leads on the left, 1 on the right, the log-odds
    # crossing zero in between. A prior that says 1 everywhere, with bonus b, moves the
    # boundary left to where class 0 leads by less than b, and nowhere else.
    xs = np.array([0.0, 10.0, 20.0])
    p0 = np.array([0.9, 0.6, 0.05], np.float32)
    probs = np.stack([p0, 1 - p0], -1)[None].repeat(2, 0)
    grid = ScoreGrid(probs, 0.0, 0.0, 10.0, 10.0)
    margin = np.interp(np.arange(21), xs, np.log(p0) - np.log(1 - p0))
    ones, zeros = np.ones((11, 21), np.uint8), np.zeros((11, 21), np.uint8)
    plain, leaning_1, leaning_0 = sticky_labels(grid, 21, 11, priors=[ones, zeros], bonus=0.5)
    assert (plain == labels_from_scores(grid, 21, 11)).all()
    assert (leaning_1[5] == np.where(margin > 0.5, 0, 1)).all()
    assert (leaning_0[5] == np.where(margin > -0.5, 0, 1)).all()
    assert (leaning_1 != plain).any() and (leaning_0 != plain).any()
    assert (sticky_labels(grid, 21, 11, priors=[ones], bonus=0.0)[1] == plain).all()


def test_label_maps_warp_by_flow_onto_any_raster():
    labels = np.zeros((40, 60), np.uint8)
    labels[:, 30:] = 7
    still = np.zeros((10, 15, 2), np.float32)  # flow at a quarter of the labels' size
    assert (flow.warp_labels([labels], still, 60, 40)[0] == labels).all()
    # this frame's pixel x shows what the previous frame had at x + 2 flow pixels (8 labels)
    moved = still.copy()
    moved[..., 0] = 2.0
    (shifted,) = flow.warp_labels([labels], moved, 60, 40)
    assert (shifted[:, 22:] == 7).all() and (shifted[:, :22] == 0).all()
    # onto a raster twice as fine: the same edge at twice the column
    (finer,) = flow.warp_labels([labels], moved, 120, 80)
    assert (finer[:, 44:] == 7).all() and (finer[:, :44] == 0).all()


def test_presets_choose_their_scales_from_the_source_size():
    """Windows at the model's height; the whole frame too up to 16:9; `high`'s second,
    unstretched row and mirrors only with the whole frame, and on 2:1 frames tall enough
    windows at the source's own resolution instead."""
    def layout(name, width, height):
        return [None if s is None else (round(s.scale * 513), round(s.aspect, 2), s.flip)
                for s in QUALITY_PRESETS[name].scales(width, height, 513, 513)]

    assert {size: layout("balanced", *size) for size in [(2048, 1024), (1280, 720), (1224, 370)]} == {
        (2048, 1024): [(513, 1.33, False)], (1280, 720): [None, (513, 1.33, False)],
        (1224, 370): [(513, 1.33, False)]}
    assert {size: layout("high", *size) for size in [(2048, 1024), (1280, 720), (1024, 512)]} == {
        (2048, 1024): [(1024, 1.0, True)], (1280, 720): [None, (513, 1.0, True), (513, 1.33, True)],
        (1024, 512): [(513, 1.33, False)]}
    assert layout("balanced", 400, 300) == layout("high", 400, 300) == [None]  # one window holds it


def _passes(preset: Preset, width: int, height: int) -> int:
    """Model calls a preset makes on one frame (plan_tiles refuses more than MAX_WINDOWS)."""
    return sum(1 if s is None else plan_tiles(width, height, 513, 513, s, 16).count * (1 + s.flip)
               for s in preset.scales(width, height, 513, 513))


def test_high_does_not_grow_with_the_source_beyond_its_measured_scales():
    """On frames up to 16:9, `high` at 1080p and 4K (and a 48 MP photo) takes what it takes at
    720p: finer scales lost there (bdd100k scaled to 4K: 0.280, below `fast`, in 107 passes);
    the source's own resolution only on frames up to 2.2:1 (2:1 Cityscapes-like), at most
    4 windows high; wider frames keep `balanced`'s row (kitti scaled to 2448x740: 0.306
    against 0.369; bdd100k cropped to 21:9 at 2560x1098: 0.193 against 0.290). No preset
    refuses a frame the 80 MP pixel limit lets in at a sane shape. (`make bench-quality`'s
    sets `bdd100k@4k`, `kitti@2x` and `bdd100k@21:9` hold those figures.)"""
    high, balanced = QUALITY_PRESETS["high"], QUALITY_PRESETS["balanced"]
    at_720p = high.scales(1280, 720, 513, 513)
    for size in [(1920, 1080), (3840, 2160), (4000, 3000), (8000, 6000)]:
        assert [s and (s.scale, s.aspect, s.flip) for s in high.scales(*size, 513, 513)] == \
            [s and (s.scale, s.aspect, s.flip) for s in at_720p], size
    for wide in [(2448, 740), (2560, 1098), (2560, 1080)]:  # 3.3:1 and 21:9
        assert high.scales(*wide, 513, 513) == balanced.scales(*wide, 513, 513)
    assert [round(s.scale * 513) for s in high.scales(2048, 1024, 513, 513)] == [1024]
    assert [round(s.scale * 513) for s in high.scales(8192, 4096, 513, 513)] == [2052]
    for size in [(8000, 6000), (12000, 6600), (12640, 6320), (20000, 4000), (40000, 2000)]:
        assert all(_passes(preset, *size) <= MAX_WINDOWS for preset in QUALITY_PRESETS.values()
                   if preset is not None), size
    assert _passes(high, 3840, 2160) == _passes(high, 1280, 720) == 15


def test_mirrored_windows_count_against_the_window_limit():
    plain = TileSettings(scale=4000 / 513, overlap=0.25)
    count = plan_tiles(6000, 4000, 513, 513, plain, 16).count
    assert MAX_WINDOWS // 2 < count <= MAX_WINDOWS
    with pytest.raises(ValueError, match=f"would need {2 * count} windows"):
        plan_tiles(6000, 4000, 513, 513, replace(plain, flip=True), 16)
    row = QUALITY_PRESETS["balanced"].scales(100000, 790, 513, 513)[0]
    for width in range(90000, 110000, 250):  # windows fall on the score grid: the limit counts those
        with contextlib.suppress(ValueError):
            assert plan_tiles(width, 790, 513, 513, row, 16).count <= MAX_WINDOWS, width


def test_whole_rows_and_mirrors_come_only_with_the_whole_frame():
    """`whole_rows` and mirrored rows on frames up to `whole_max_aspect`, never on wider
    ones; `flip` mirrors every row on every frame."""
    preset = Preset(rows=((4 / 3, 1 / 3),), whole_max_aspect=1.8, whole_rows=((1.0, 0.25),),
                    mirror_rows=True)

    def layout(preset, width, height):
        return [None if s is None else (round(s.scale * 513), round(s.aspect, 2), s.overlap, s.flip)
                for s in preset.scales(width, height, 513, 513)]

    assert layout(preset, 1280, 720) == [None, (513, 1.0, 0.25, True), (513, 1.33, 1 / 3, True)]
    assert layout(preset, 1920, 1080) == layout(preset, 1280, 720)
    assert layout(preset, 2048, 1024) == [(513, 1.33, 1 / 3, False)]
    assert layout(preset, 1224, 370) == [(513, 1.33, 1 / 3, False)]
    assert layout(replace(preset, flip=True), 2048, 1024) == [(513, 1.33, 1 / 3, True)]
    plain = Preset(whole_max_aspect=1.8)
    assert layout(plain, 1280, 720) == [None, (513, 1.0, 0.25, False)]
    assert layout(replace(plain, flip=True), 1280, 720) == [None, (513, 1.0, 0.25, True)]


def test_wide_frames_tall_enough_take_only_their_own_resolution_mirrored():
    """`wide_native`: a frame wider than `whole_max_aspect` and at least that many windows
    high takes windows at its own resolution alone, not stretched and mirrored; a lower one
    and a frame up to 16:9 keep the preset's scales."""
    preset = Preset(rows=((4 / 3, 1 / 3),), whole_max_aspect=1.8, wide_native=1.1, native_overlap=0.25,
                    native_max_aspect=2.2, native_max_height=4.0)

    def layout(width, height):
        return [None if s is None else (round(s.scale * 513), round(s.aspect, 2), s.overlap, s.flip)
                for s in preset.scales(width, height, 513, 513)]

    assert layout(2048, 1024) == [(1024, 1.0, 0.25, True)]
    assert layout(1152, 576) == [(576, 1.0, 0.25, True)]
    assert layout(8192, 4096) == [(2052, 1.0, 0.25, True)]  # at most 4 windows high
    assert layout(1024, 512) == [(513, 1.33, 1 / 3, False)]  # under 1.1 windows high
    assert layout(2448, 740) == [(513, 1.33, 1 / 3, False)]  # tall enough, but wider than 2.2:1
    assert layout(1920, 1080) == [None, (513, 1.33, 1 / 3, False)]  # 16:9: the rows, as without wide_native
    assert Preset(rows=((4 / 3, 1 / 3),), whole_max_aspect=1.8).scales(2048, 1024, 513, 513)[0].flip is False
