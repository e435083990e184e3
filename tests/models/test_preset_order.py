"""Dearer presets are never worse: on the dev sets like the users' footage (bdd100k: US
dashcam frames; kitti), `high` >= `balanced` >= `fast` in mIoU for the default model; and
on aachen, the only full-size 2:1 Cityscapes frames here (training frames: a check of the
2:1 rule, never the ground for choosing it alone).

The frames' scores are cached on disk by `benchmarks/quality_sets.py` (keyed by the code
that makes them, so any change to it scores afresh): `make bench-quality` and this test
share them, and a re-run costs seconds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import quality_sets

from beam_seg.models import DEFAULT_MODEL, load_label_set, load_model, resolve
from beam_seg.models.scoring import QUALITY_PRESETS, InferenceSettings

pytestmark = pytest.mark.real_model

_MODEL: list = []


def _model():
    if not _MODEL:
        resolved = resolve(DEFAULT_MODEL)
        _MODEL.append(load_model(resolved, 2, 1, load_label_set(resolved.labels).num_classes))
    return _MODEL[0]


@pytest.mark.parametrize("name", ["bdd100k", "kitti", "aachen"])
def test_presets_are_monotone_in_miou(name):
    (dataset,) = quality_sets.data_sets(names=[name])
    miou = {preset: quality_sets.measure(_model, DEFAULT_MODEL, dataset,
                                         InferenceSettings(tiles=tiles))["miou"]
            for preset, tiles in QUALITY_PRESETS.items()}
    print(name, miou)
    assert miou["fast"] <= miou["balanced"] <= miou["high"]
    if name == "bdd100k":
        # the bar for US dashcam frames (held-out ones; these are the dev set): met
        # since frames brighter than Cityscapes' are darkened first (0.274 and 0.284 before)
        assert miou["balanced"] >= 0.27 and miou["high"] >= 0.29
