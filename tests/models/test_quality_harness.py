"""`make bench-quality` scores each preset as the pipeline runs it: fixed-size models take
the preset's windows, models of any size its working sizes (without them a model such as
EfficientViT-B0 ran at the source size, which its multiples of 32 refuse on KITTI's 1224x370)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import quality
import quality_sets
from fakes import FakeScoresModel
from quality_sets import DataSet, Sequence

from beam_seg.models.anysize import SIZE_PRESETS
from beam_seg.models.scoring import QUALITY_PRESETS, InferenceSettings


def _dataset(video: bool, size=(1280, 720)) -> DataSet:
    clip = Sequence("clip", 12, size, lambda: [], {})
    return DataSet("made-up", "", [clip], video=video)


@pytest.mark.parametrize("preset", list(QUALITY_PRESETS))
@pytest.mark.parametrize("video", [False, True])
def test_every_row_gives_both_kinds_of_model_the_presets_own_settings(preset, video):
    rows = quality.settings_rows(preset, _dataset(video))
    assert rows
    for _, settings, _, _ in rows:
        assert settings.tiles == QUALITY_PRESETS[preset]
        assert settings.sizes == SIZE_PRESETS[preset]


def test_key_frame_rows_pool_every_phase_of_the_key_frames(tmp_path, monkeypatch):
    """With --keyframes N a clip is fused N times, the key frames shifted by one frame each
    time, and every run's annotated frames counted: one annotated frame is then measured as a
    key frame and at every distance from one, not at whichever distance frame 0 gives it."""
    monkeypatch.setattr(quality_sets, "CACHE", tmp_path)  # the scores cache, in this test alone
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (72, 128, 3), dtype=np.uint8) for _ in range(6)]
    truth = np.zeros((72, 128), np.uint8)
    clip = Sequence("clip", 6, (128, 72), lambda: frames, {1: lambda: truth})
    runs = []
    fuse = quality_sets.fused_labels

    def recorded(frames, segs, k, keyframes=1, phase=0):
        runs.append((k, keyframes, phase))
        return fuse(frames, segs, k, keyframes, phase)

    monkeypatch.setattr(quality_sets, "fused_labels", recorded)
    model = FakeScoresModel()
    settings = InferenceSettings(tiles=QUALITY_PRESETS["balanced"])
    row = quality_sets.measure(lambda: model, "fake", DataSet("d", "", [clip], video=True), settings,
                               k=3, classes=19, keyframes=4)
    assert runs == [(3, 4, 0), (3, 4, 1), (3, 4, 2), (3, 4, 3)]
    assert 0 <= row["miou"] <= 1 and row["flicker"] >= 0
    runs.clear()
    quality_sets.measure(lambda: model, "fake", DataSet("d", "", [clip], video=True), settings, k=1)
    assert runs == [(1, 1, 0)]  # every frame in full: one run
