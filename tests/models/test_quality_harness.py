"""`make bench-quality` scores each preset as the pipeline runs it: fixed-size models take
the preset's windows, models of any size its working sizes (without them a model such as
EfficientViT-B0 ran at the source size, which its multiples of 32 refuse on KITTI's 1224x370)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import quality
from quality_sets import DataSet, Sequence

from beam_seg.models.anysize import SIZE_PRESETS
from beam_seg.models.scoring import QUALITY_PRESETS


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
