"""Fast tier: RunConfig is the one source of options, and of the resume digest."""

from __future__ import annotations

import dataclasses

import pytest

from beam_seg.config import RunConfig, flag
from beam_seg.job.launch import build_parser

# A value unlike the default for every option. A new RunConfig field fails
# test_every_field_is_covered until it is listed here, and the digest tests then check
# that its `shapes_output` mark is true to what it does.
OTHER_VALUES = {
    "output": "/elsewhere", "model": "pascal-mnv2-quant", "labels": "pascal", "alpha": 0.7,
    "overlay_format": "png", "every_nth_frame": 2, "segment_frames": 30, "quality": "fast",
    "tile_scale": 1.5, "tile_overlap": 0.5, "tile_aspect": 1.2, "flip": True, "resize_mode": "pad",
    "max_image_pixels": 1000, "batch_size": 4, "threads": 3, "interpreters": 2, "large_model": True,
    "model_copies": 2, "overwrite": True, "verbose": True, "progress_dir": "/tmp/progress",
    "storage_deadline": 5.0,
    "onnx_spec": "{\"input\": {\"multiple\": 16}}", "onnx_providers": "cuda",
    "temporal": 2, "legend": "none",
    "keyframes": 3,
    "roi": "0,0.5 1,0.5 1,1 0,1", "min_object_area": 0.001, "event_enter": 0.01,
    "event_exit": 0.001, "event_min_duration": 1.0,
}


def test_every_field_declares_whether_it_shapes_outputs_and_has_help():
    for f in dataclasses.fields(RunConfig):
        assert isinstance(f.metadata.get("shapes_output"), bool), f.name
        assert f.metadata.get("help"), f.name


def test_every_field_is_covered():
    assert set(OTHER_VALUES) == {f.name for f in dataclasses.fields(RunConfig)}


@pytest.mark.parametrize("field", [f for f in dataclasses.fields(RunConfig)], ids=lambda f: f.name)
def test_the_digest_changes_exactly_with_the_output_shaping_options(field):
    base = RunConfig(output="/out")
    other = dataclasses.replace(base, **{field.name: OTHER_VALUES[field.name]})
    changed = other.fingerprint != base.fingerprint
    assert changed == field.metadata["shapes_output"], field.name


def test_the_parser_is_generated_from_the_fields():
    help_text = build_parser().format_help()
    assert build_parser().prog == "beam-seg segment"
    for f in dataclasses.fields(RunConfig):
        if f.metadata.get("internal"):
            assert flag(f.name) not in help_text
        else:
            assert flag(f.name) in help_text, f.name
    args = build_parser().parse_args(["in.mp4", "--output", "o", "--quality", "fast", "--flip"])
    cfg = RunConfig.from_args(args)
    assert (cfg.quality, cfg.flip, cfg.alpha) == ("fast", True, 0.5)
    assert cfg.output.startswith("/")  # made absolute once, at launch


def test_key_frames_widen_fusion_to_reach_them_and_need_fusion():
    cfg = RunConfig(output="/tmp/x", quality="balanced", keyframes=4)
    assert cfg.keyframe_interval() == 4 and cfg.temporal_frames() == 3
    off = RunConfig(output="/tmp/x", quality="balanced", keyframes=4, temporal=0)
    assert off.keyframe_interval() == 1 and off.temporal_frames() == 0
    wide = RunConfig(output="/tmp/x", quality="high", keyframes=2, temporal=2)
    assert wide.temporal_frames() == 2  # K as asked when it already reaches them


def test_the_presets_key_frames_apply_to_frames_the_preset_also_takes_whole(monkeypatch):
    from beam_seg import config

    monkeypatch.setitem(config.KEYFRAME_PRESETS, "balanced", 3)
    cfg = RunConfig(output="/tmp/x", quality="balanced")
    dashcam, cityscapes = (960, 540), (2048, 1024)
    assert cfg.keyframe_interval(dashcam) > 1
    assert cfg.temporal_frames(dashcam) == cfg.keyframe_interval(dashcam) - 1
    assert cfg.keyframe_interval(cityscapes) == 1 and cfg.temporal_frames(cityscapes) == 1
    assert RunConfig(output="/tmp/x", quality="high").keyframe_interval(dashcam) == 1
    assert RunConfig(output="/tmp/x", quality="balanced", keyframes=2).keyframe_interval(cityscapes) == 2
