"""Annotated clips made from annotated stills: the picture and its ground truth move together."""

from __future__ import annotations

import itertools

import numpy as np

from beam_seg.media.synthetic_video import CameraPath, camera_matrices, make_clip, write_clip


def blocks(width: int = 640, height: int = 360, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A still of coloured rectangles and its labels (each class one colour)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((height, width), np.uint8)
    for c in range(1, 12):
        x, y = rng.integers(0, width - 60), rng.integers(0, height - 40)
        labels[y:y + rng.integers(20, 120), x:x + rng.integers(8, 160)] = c
    palette = rng.integers(0, 256, (256, 3)).astype(np.uint8)
    return palette[labels], labels


def test_every_frame_has_ground_truth_that_follows_the_picture():
    rgb, labels = blocks()
    palette = {tuple(rgb[y, x]): labels[y, x] for y, x in zip(*np.nonzero(np.ones_like(labels)), strict=True)}
    frames, truths = make_clip(rgb, labels, 256, 144, CameraPath(frames=12, shake=(5, 6)))
    assert len(frames) == len(truths) == 12
    for frame, truth in zip(frames, truths, strict=True):
        assert frame.shape == (144, 256, 3) and truth.shape == (144, 256) and truth.dtype == np.uint8
        # away from edges (where bilinear blends two colours) the picture's colour names its label
        seen = [palette.get(tuple(px)) for px in frame.reshape(-1, 3)]
        known = np.array([s is not None for s in seen])
        agree = np.array([s == t for s, t in zip(seen, truth.ravel(), strict=True)])
        assert known.mean() > 0.8
        assert agree[known].mean() > 0.99


def test_the_camera_zooms_in_pans_and_shakes_only_on_its_shake_frames():
    path = CameraPath(frames=10, zoom=1.25, pan=0.05, shake=(4,))
    mats = camera_matrices(path, 1280, 720, 512, 288)
    scales = [float(np.hypot(*m[0, :2])) for m in mats]
    assert np.isclose(scales[0], 1280 / 512 * 0.95) and np.isclose(scales[0] / scales[-1], 1.25)
    assert all(a > b for a, b in itertools.pairwise(scales))  # steady zoom-in
    centre_x = [m[0] @ [255.5, 143.5, 1] for m in mats]
    assert centre_x[-1] > centre_x[0]  # a pan to the right
    smooth = [i for i in range(1, 9) if i not in (3, 4, 5)]
    steps = np.diff(centre_x)
    assert np.ptp(steps[[s - 1 for s in smooth]]) < 1.0  # constant drift away from the shake
    assert not np.isclose(mats[4][0, 1], 0.0)  # the shaken frame is rotated, the others not
    assert all(np.isclose(m[0, 1], 0.0) for i, m in enumerate(mats) if i != 4)


def test_a_clip_is_written_at_its_size_and_length(tmp_path):
    from beam_seg.media import video

    rgb, labels = blocks()
    frames, _ = make_clip(rgb, labels, 256, 144, CameraPath(frames=8))
    info = video.probe(write_clip(frames, str(tmp_path / "clip.mp4")))
    assert (info.width, info.height, info.frame_count) == (256, 144, 8)
    seg = video.plan_segments(info, info.frame_count)[0]
    decoded = [f.copy() for f in video.decode_frames(str(tmp_path / "clip.mp4"), info, seg)]
    assert np.abs(decoded[3].astype(int) - frames[3]).mean() < 3  # quality high enough not to matter
