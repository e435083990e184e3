"""The per-pixel primitives every frame goes through, against their plain-numpy meaning."""

import tracemalloc

import cv2
import numpy as np
import pytest
from PIL import Image

from beam_seg.labels import CITYSCAPES
from beam_seg.media import pixels


def test_nearest_upsampling_repeats_pixels_and_never_blends():
    ids = np.array([[1, 2], [3, 4]], np.uint8)
    np.testing.assert_array_equal(pixels.resize_nearest(ids, 4, 4),
                                  [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    assert set(np.unique(pixels.resize_nearest(ids, 2048, 1024))) == {1, 2, 3, 4}
    assert pixels.resize_nearest(ids, 2, 2) is ids


@pytest.mark.parametrize("size", [(960, 540), (513, 513), (1241, 377), (7, 3)])
def test_nearest_resize_samples_pixel_centres_like_pillow(size):
    """Pillow's NEAREST (what label maps were upsampled with before) is the reference."""
    ids = np.random.default_rng(1).integers(0, 19, (288, 513), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(ids).resize(size, Image.NEAREST))
    np.testing.assert_array_equal(pixels.resize_nearest(ids, *size), expected)


def test_linear_resize_keeps_flat_colour_and_ramps():
    flat = np.full((540, 960, 3), (10, 200, 77), np.uint8)
    assert (pixels.resize_linear(flat, 513, 513) == (10, 200, 77)).all()
    ramp = np.repeat(np.linspace(0, 255, 960).astype(np.uint8)[None, :, None], 3, axis=2).repeat(4, axis=0)
    out = pixels.resize_linear(ramp, 480, 4)[0, :, 0].astype(int)
    assert out.shape == (480,) and (np.diff(out) >= 0).all() and out[0] < 3 and out[-1] > 252


def test_colorize_is_a_palette_lookup():
    ids = np.random.default_rng(2).integers(0, 256, (37, 53), dtype=np.uint8)
    np.testing.assert_array_equal(pixels.colorize(ids, CITYSCAPES.palette), CITYSCAPES.palette[ids])
    short = CITYSCAPES.palette[:19]  # a palette of only the classes: ids past it are black
    expected = np.where((ids < 19)[..., None], short[np.minimum(ids, 18)], 0)
    np.testing.assert_array_equal(pixels.colorize(ids, short), expected)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_blend_matches_the_float_formula(alpha):
    rng = np.random.default_rng(3)
    rgb, colors = (rng.integers(0, 256, (31, 17, 3), dtype=np.uint8) for _ in range(2))
    expected = rgb * (1 - alpha) + colors * alpha
    assert np.abs(pixels.blend(rgb, colors, alpha) - expected).max() <= 0.5 + 1e-6


def test_blend_refuses_alpha_outside_0_1():
    rgb = np.zeros((2, 2, 3), np.uint8)
    with pytest.raises(ValueError, match="alpha"):
        pixels.blend(rgb, rgb, 1.5)


def test_histogram_counts_every_id_exactly_even_past_float32_precision():
    ids = np.random.default_rng(4).integers(0, 256, (300, 200), dtype=np.uint8)
    np.testing.assert_array_equal(pixels.id_histogram(ids), np.bincount(ids.ravel(), minlength=256))
    big = np.zeros((4097, 4097), np.uint8)  # 2**24 + 8193 pixels of one id
    big[0, 0] = 7
    hist = pixels.id_histogram(big)
    assert hist[0] == big.size - 1 and hist[7] == 1 and hist.dtype == np.int64
    row = np.random.default_rng(5).integers(0, 256, (1, 2**24 + 3), dtype=np.uint8)  # one row past it
    np.testing.assert_array_equal(pixels.id_histogram(row), np.bincount(row.ravel(), minlength=256))


def test_histogram_of_a_huge_map_allocates_no_copy_of_it():
    """A 48 MP photo's label map (48 MB) was first copied as int64 (384 MB) to be counted."""
    ids = np.full((6000, 8000), 3, np.uint8)
    ids[-1, -1] = 250
    tracemalloc.start()
    try:
        hist = pixels.id_histogram(ids)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert hist[3] == ids.size - 1 and hist[250] == 1
    assert peak < ids.nbytes // 4, peak


@pytest.mark.parametrize("size", [(540, 960), (7, 5), (1, 1)])
def test_label_png_is_a_valid_palette_png_with_exact_ids(size):
    """Pillow reads the ids back as palette indices with the label colours; libpng (through
    OpenCV, which checks every chunk's CRC and order) shows those colours."""
    import io

    import cv2

    from beam_seg.media.render import label_png_bytes, read_label_png

    rng = np.random.default_rng(1)
    ids = np.repeat(rng.choice([0, 1, 13, 18, 255], size=(size[0], max(1, size[1] // 4))), 4, axis=1)
    ids = np.ascontiguousarray(ids[:, :size[1]], np.uint8)
    data = label_png_bytes(ids, CITYSCAPES)
    image = Image.open(io.BytesIO(data))
    assert image.mode == "P"
    np.testing.assert_array_equal(np.asarray(image.getpalette(), np.uint8).reshape(-1, 3),
                                  CITYSCAPES.palette)
    np.testing.assert_array_equal(read_label_png(data), ids)
    shown = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(shown[..., ::-1], CITYSCAPES.palette[ids])


def test_frames_brighter_than_the_models_training_frames_are_darkened_to_their_mean():
    rng = np.random.default_rng(3)
    bright = rng.integers(100, 181, (48, 64, 3), dtype=np.uint8)  # mean grey about 140
    out = pixels.darken_to_mean(bright, 70.0)
    grey = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
    assert abs(float(grey.mean()) - 70.0) < 1.0
    # one factor for the whole frame: colours keep their ratios (within rounding)
    ratio = out.astype(np.float32) / bright
    assert ratio.max() - ratio.min() < 0.02
    dark = (bright // 3).astype(np.uint8)  # mean grey about 47: left alone, never brightened
    assert pixels.darken_to_mean(dark, 70.0) is dark
    assert pixels.darken_to_mean(bright, None) is bright
    grey = bright[..., 0]  # not a frame a model is given: left as it is, not an error
    assert pixels.darken_to_mean(grey, 70.0) is grey


def test_the_model_sees_the_darkened_frame_and_the_overlay_keeps_the_original():
    from fakes import FakeScoresModel

    from beam_seg.models.scoring import score_frames

    seen = []
    model = FakeScoresModel()
    predict = model.predict
    model.predict = lambda batch: seen.append(batch.copy()) or predict(batch)
    bright = np.full((65, 65, 3), 140, np.uint8)
    score_frames(model, [bright])
    model.exposure_mean = 70.0
    score_frames(model, [bright])
    plain, darkened = (float(batch.mean()) for batch in seen)
    assert plain == 140.0 and darkened == 70.0
    assert bright.mean() == 140.0  # the caller's frame (what overlays are drawn on) is untouched
