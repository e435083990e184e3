"""Dearer presets are never worse: on the dev sets like the users' footage (bdd100k: US
dashcam frames; kitti), `high` >= `balanced` >= `fast` in mIoU for the default model; and
on aachen, the only full-size 2:1 Cityscapes frames here (training frames: a check of the
2:1 rule, never the ground for choosing it alone). On annotated clips, the same order holds
for each preset's default video run (fusion, key frames). The sets scaled up (`bdd100k@4k`,
`kitti@2x`, `bdd100k@21:9`) are `make bench-quality`'s: there `high` takes the scales it
takes at the dev sizes, which `test_scores.py` checks without the model.

The frames' scores are cached on disk by `benchmarks/quality_sets.py` (keyed by the code
that makes them, so any change to it scores afresh): `make bench-quality` and this test
share them, and a re-run costs seconds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import quality_sets

from beam_seg.config import RunConfig
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


# Three stills as 12-frame 960x540 clips (the harness's synthetic clips, so `make
# bench-quality` and this test share their scores): two US dashcam frames and a KITTI one
_CLIP_STILLS = ("00a395fe-d60c0b47.jpg", "00a360bd-27ccb1dd.jpg", "kitti_000002_000010_leftImg8bit.png")


def _synthetic_clips() -> quality_sets.DataSet:
    pairs = dict(quality_sets.still_pairs("bdd100k") + quality_sets.still_pairs("kitti"))
    camera = quality_sets.synthetic_camera(12)
    return quality_sets.DataSet("synthetic", "", [
        quality_sets.synthetic_clip(image, pairs[image], 960, 540, camera)
        for image in sorted(pairs, key=lambda p: p.name) if image.name in _CLIP_STILLS], video=True)


def _as_the_pipeline_runs(dataset: quality_sets.DataSet, preset: str, **options) -> dict:
    """A clip set's figures with the settings, fusion K and key frames N that `RunConfig`
    gives its videos (by default, or with `options`)."""
    cfg = RunConfig(output="unused", quality=preset, **options)
    size = dataset.sequences[0].size
    return quality_sets.measure(_model, DEFAULT_MODEL, dataset, cfg.inference_settings()["video"],
                                cfg.temporal_frames(size), keyframes=cfg.keyframe_interval(size))


def test_each_presets_default_video_run_is_monotone_and_fusion_keeps_miou():
    """On annotated clips, as the pipeline runs each preset by default (its settings, fusion
    and key frames from `RunConfig`; on 16:9 `balanced` takes key frames): `high` >=
    `balanced` >= `fast`; `high`'s fusion keeps or raises mIoU against its own `--temporal 0`
    and cuts flicker to 0.6x or less; the default stays within 0.005 of `balanced --temporal 0`."""
    dataset = _synthetic_clips()
    assert len(dataset.sequences) == len(_CLIP_STILLS)
    default = {preset: _as_the_pipeline_runs(dataset, preset) for preset in QUALITY_PRESETS}
    alone = {preset: _as_the_pipeline_runs(dataset, preset, temporal=0) for preset in ("balanced", "high")}
    print({"default": default, "--temporal 0": alone})
    # key frames are part of this check
    assert RunConfig(output="unused").keyframe_interval(dataset.sequences[0].size) > 1
    assert default["fast"]["miou"] <= default["balanced"]["miou"] <= default["high"]["miou"]
    assert default["high"]["miou"] >= alone["high"]["miou"]
    assert default["high"]["flicker"] <= 0.6 * alone["high"]["flicker"]
    assert default["balanced"]["miou"] >= alone["balanced"]["miou"] - 0.005


def test_each_presets_default_run_is_monotone_on_real_motion_at_16_9():
    """The one real 16:9 clip with ground truth (the 912x512 middle of seq0000 at 1024x512:
    a moving car, one annotated frame), where `balanced`'s default takes key frames: it once fell
    below `fast` there (0.552 against 0.555), before key frames were fused on their own grid
    and heard only where the warp matches."""
    (dataset,) = quality_sets.data_sets(names=["clip-seq0000@1024-16:9"])
    miou = {preset: _as_the_pipeline_runs(dataset, preset)["miou"] for preset in QUALITY_PRESETS}
    print(miou)
    assert RunConfig(output="unused").keyframe_interval(dataset.sequences[0].size) > 1
    assert miou["fast"] <= miou["balanced"] <= miou["high"]
