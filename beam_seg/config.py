"""Every option of a `segment` run in one place: its flag, default, help, and whether it
shapes the outputs.

The command line parser is generated from `RunConfig`'s fields, and the resume digest is
computed from the fields marked `shapes_output`, so an option can never be added to one and
forgotten in the other: a re-run only reuses outputs made with the same output-shaping
options. A field without that mark fails `option()`'s signature and a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from beam_seg import __version__, naming
from beam_seg.media import images, render
from beam_seg.models import DEFAULT_MODEL
from beam_seg.models.anysize import SIZE_PRESETS, SizePreset
from beam_seg.models.placement import RESIZE_MODES
from beam_seg.models.scoring import QUALITY_PRESETS, InferenceSettings
from beam_seg.models.tiling import Preset, TileSettings
from beam_seg.tables.events import EventSettings
from beam_seg.tables.regions import (
    DEFAULT_MIN_OBJECT_AREA,
    DEFAULT_ROI,
    RegionSettings,
    format_roi,
    parse_roi,
)

# Frames fused on each side of a video frame, by preset: `fast` stays one pass per frame,
# so a video frame and the same picture as a still get the same labels. `high` fuses as
# `balanced` does and spends its extra cost on windows only: with K=2 it fell below
# `balanced` on two clip sets whose frames both presets score alike (seq0001 -0.0016,
# seq0000@1024 -0.0010), and on seq0000, where it has more windows, K=1 scored 0.655
# against 0.653 for K=2 (docs/quality.md).
TEMPORAL_PRESETS = {"fast": 0, "balanced": 1, "high": 1}
# Key frames by preset (--keyframes N): the preset's windows on every Nth video frame only,
# one whole-frame pass on the others, whose detail fusion carries from the key frames; only
# on videos up to 16:9 (see `keyframe_interval`), measured in docs/quality.md.
KEYFRAME_PRESETS = {"fast": 1, "balanced": 4, "high": 1}


def _number(text: str, kind: type, what: str) -> Any:
    """`text` as an int or float, or argparse's one-line error saying what was expected
    (argparse itself would name the type function: "invalid unit_interval value")."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number: must be {what}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}")
    return value


def positive_int(text: str) -> int:
    value = _number(text, int, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int, "0 or a positive integer")
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or a positive integer")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float, "a positive number")
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float, "0 or a positive number")
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or a positive number")
    return value


def fraction(text: str) -> float:
    value = _number(text, float, "between 0 and 0.9")
    if not 0.0 <= value <= 0.9:
        raise argparse.ArgumentTypeError("must be between 0 and 0.9")
    return value


def unit_interval(text: str) -> float:
    value = _number(text, float, "between 0 and 1")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def roi_polygons(text: str) -> str:
    """--roi: polygons in relative coordinates, kept in one normal spelling (for the digest)."""
    try:
        return format_roi(parse_roi(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def option(default: Any, help: str, *, shapes_output: bool, **argparse_kwargs: Any) -> Any:
    """A RunConfig field that is also a command-line option.

    `shapes_output` is required: True when a different value can change any output byte
    (then it enters the resume digest), False when it only changes speed or bookkeeping.
    """
    metadata = {"help": help, "shapes_output": shapes_output, "argparse": argparse_kwargs}
    return field(default=default, metadata=metadata)


def internal(default: Any, help: str) -> Any:
    """A RunConfig field the launcher sets for the workers; not an option, never output-shaping."""
    return field(default=default, metadata={"help": help, "shapes_output": False, "internal": True})


@dataclass(frozen=True)
class RunConfig:
    """A segment run's options, fixed at launch and shipped to every worker."""

    output: str = option(None, "output root directory or URI (local, gs://, s3://)",
                         shapes_output=False, metavar="OUT", required=True)
    model: str = option(DEFAULT_MODEL, "registry name (see `beam-seg models`) or a .tflite / "
                        ".onnx / SavedModel / frozen-graph path or URI", shapes_output=True)
    onnx_spec: str | None = option(None, "an ONNX model's input/output description, over its "
                                   "sidecar MODEL.onnx.json: a JSON file or inline JSON "
                                   "(see docs/models.md)", shapes_output=True, metavar="JSON")
    onnx_providers: str = option("cpu", "ONNX Runtime execution providers in order of "
                                 "preference: cpu, cuda, tensorrt (comma-separated; the CPU is "
                                 "always the last resort)", shapes_output=False,
                                 metavar="LIST")
    labels: str | None = option(None, "label set of a model outside the registry: "
                                "cityscapes|pascal|ade20k|FILE (default: the model's)",
                                shapes_output=True)
    alpha: float = option(0.5, "overlay opacity, 0 (frame only) .. 1 (label colours only)",
                          shapes_output=True, type=unit_interval)
    overlay_format: str = option("jpg", "overlay image format", shapes_output=True,
                                 choices=("jpg", "png"))
    legend: str = option("video", "draw a key of the classes present on each frame of the "
                         "segmented video (video), also on every overlay image (all), or "
                         "nowhere (none); label PNGs never change", shapes_output=True,
                         choices=render.LEGEND_PLACES, metavar="{video,all,none}")
    every_nth_frame: int = option(1, "process frames 0, N, 2N, ... of each video",
                                  shapes_output=True, type=positive_int, metavar="N")
    segment_frames: int = option(150, "frames per video work unit spread over workers",
                                 shapes_output=True, type=positive_int, metavar="N")
    quality: str | None = option(None, "fast: one pass; balanced: a few overlapping windows; "
                                 "high: more windows, mirrored (2:1 frames: at their own "
                                 "resolution) (default: balanced for videos, high for images)",
                                 shapes_output=True, choices=tuple(QUALITY_PRESETS))
    tile_scale: float | None = option(None, "sliding windows: working height in model-input "
                                      "heights (default: the preset's)", shapes_output=True,
                                      type=positive_float, metavar="S")
    tile_overlap: float | None = option(None, "sliding windows: least overlap of neighbours, "
                                        "0..0.9 of a window (default: the preset's)",
                                        shapes_output=True, type=fraction, metavar="F")
    tile_aspect: float | None = option(None, "sliding windows: horizontal stretch of the working "
                                       "frame (default: the preset's)", shapes_output=True,
                                       type=positive_float, metavar="A")
    flip: bool = option(False, "also segment each window mirrored and merge both (2x the cost)",
                        shapes_output=True, action="store_true")
    temporal: int | None = option(None, "videos: fuse each frame's scores with those of up to K "
                                  "frames before and after it, warped by optical flow (0 = off; "
                                  "default: the preset's, fast 0, balanced and high 1)",
                                  shapes_output=True, type=non_negative_int, metavar="K")
    keyframes: int | None = option(None, "videos: the preset's windows on every Nth frame only, one "
                                   "whole-frame pass on the others, which temporal fusion gives "
                                   "the key frames' detail (1 = every frame in full; default: "
                                   "balanced 4 on videos up to 16:9, else 1; off when --temporal is 0)",
                                   shapes_output=True, type=positive_int, metavar="N")
    resize_mode: str = option("stretch", "single pass (--quality fast): fit frames by stretching "
                              "or by padding", shapes_output=True, choices=RESIZE_MODES)
    roi: str = option(format_roi(DEFAULT_ROI), "region ahead of the car for the roi_<class> "
                      "columns: polygons of x,y points relative to the frame (0..1, y down), "
                      "separated by ';'", shapes_output=True, type=roi_polygons, metavar="POLYGONS")
    min_object_area: float = option(DEFAULT_MIN_OBJECT_AREA, "smallest blob counted in the "
                                    "n_<class> object columns, as a share of the frame",
                                    shapes_output=True, type=unit_interval, metavar="SHARE")
    event_enter: float = option(EventSettings.enter, "an event of a class starts at a frame it "
                                "covers more of than this share", shapes_output=True,
                                type=unit_interval, metavar="SHARE")
    event_exit: float = option(EventSettings.exit, "... and ends at the first frame it covers "
                               "no more of than this (at most --event-enter)", shapes_output=True,
                               type=unit_interval, metavar="SHARE")
    event_min_duration: float = option(EventSettings.min_duration_s, "events shorter than this "
                                       "many seconds (first to last frame) are dropped",
                                       shapes_output=True, type=non_negative_float,
                                       metavar="SECONDS")
    max_image_pixels: int = option(images.DEFAULT_MAX_PIXELS, "refuse images and video frames "
                                   "with more pixels than this (decompression-bomb guard)",
                                   shapes_output=False, type=positive_int)
    batch_size: int = option(1, "frames per inference batch", shapes_output=False,
                             type=positive_int)
    threads: int | None = option(None, "threads per TFLite interpreter (default: the worker's "
                                 "cores / interpreters)", shapes_output=False, type=positive_int)
    interpreters: int | None = option(None, "TFLite interpreters per worker process, inferring "
                                      "side by side (default: one per DirectRunner thread, else 1)",
                                      shapes_output=False, type=positive_int)
    large_model: bool = option(False, "load one model per machine instead of per process "
                               "(Beam large_model)", shapes_output=False, action="store_true")
    model_copies: int | None = option(None, "exact model copies per machine (Beam model_copies)",
                                      shapes_output=False, type=positive_int)
    overwrite: bool = option(False, "redo inputs that an earlier run into OUT finished, and "
                             "replace outputs made with other options", shapes_output=False,
                             action="store_true")
    storage_deadline: float = option(60.0, "seconds a remote storage call may take, retries "
                                     "included, before the run takes the store as gone",
                                     shapes_output=False, type=positive_float, metavar="S")
    verbose: bool = option(False, "also show Beam's own log lines and the files a folder scan "
                           "skipped", shapes_output=False, action="store_true")
    progress_dir: str | None = internal(None, "where local workers keep their progress counters")

    def __post_init__(self) -> None:
        _ = self.event_settings  # ValueError at launch for thresholds that cannot work

    @cached_property
    def region_settings(self) -> RegionSettings:
        return RegionSettings(parse_roi(self.roi), self.min_object_area)

    @cached_property
    def event_settings(self) -> EventSettings:
        return EventSettings(self.event_enter, self.event_exit, self.event_min_duration)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunConfig:
        from beam_seg import storage

        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                  if not f.metadata.get("internal")}
        values["output"] = storage.absolute(values["output"])
        return cls(**values)

    @property
    def layout(self) -> naming.OutputLayout:
        return naming.OutputLayout(self.output)

    def output_options(self) -> dict[str, Any]:
        """The options that shape outputs, by name (what the digest is made of)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata["shapes_output"]}

    @cached_property
    def fingerprint(self) -> str:
        """Digest of this version and every output-shaping option: a re-run reuses a finished
        input or segment only when the run that made it had the same one."""
        text = json.dumps({"beam_seg": __version__, **self.output_options()}, sort_keys=True,
                          default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def preset(self, kind: str) -> str:
        return self.quality or ("high" if kind == "image" else "balanced")

    def tile_settings(self, kind: str) -> TileSettings | Preset | None:
        """The preset for this input kind, with any fine knob from the command line on top:
        a window knob replaces the preset's scales by the one working scale it describes."""
        tiles = QUALITY_PRESETS[self.preset(kind)]
        knobs = {name: value for name, value in (
            ("scale", self.tile_scale), ("overlap", self.tile_overlap),
            ("aspect", self.tile_aspect)) if value is not None}
        if knobs:
            tiles = dataclasses.replace(TileSettings(), **knobs)
        if self.flip:
            tiles = dataclasses.replace(tiles or TileSettings(), flip=True)
        return tiles

    def temporal_frames(self, size: tuple[int, int] | None = None) -> int:
        """K of temporal fusion for videos (images are never fused): with key frames, at least
        N-1, so that every frame reaches the key frames on both sides of it. `size`: the
        video's (width, height), which decides whether the preset's key frames apply."""
        k = self.temporal if self.temporal is not None else TEMPORAL_PRESETS[self.preset("video")]
        return max(k, self.keyframe_interval(size) - 1) if k else 0

    def keyframe_interval(self, size: tuple[int, int] | None = None) -> int:
        """N of --keyframes for a video of `size` (width, height): 1 (every frame in full) when
        nothing is fused. A preset's own N applies to frames that the preset itself also
        takes whole (up to its `whole_max_aspect`, 16:9): there the whole-frame pass is one of
        its scales; on wider frames (2:1 Cityscapes) it lost 0.06 mIoU. --keyframes N applies
        to every video."""
        k = self.temporal if self.temporal is not None else TEMPORAL_PRESETS[self.preset("video")]
        if k == 0:
            return 1
        if self.keyframes is not None:
            return self.keyframes
        tiles = self.tile_settings("video")
        if not isinstance(tiles, Preset) or size is None or size[0] > tiles.whole_max_aspect * size[1]:
            return 1
        return KEYFRAME_PRESETS[self.preset("video")]

    def size_settings(self, kind: str) -> SizePreset:
        """Working sizes of a model that takes any size (the window knobs do not apply)."""
        sizes = SIZE_PRESETS[self.preset(kind)]
        return dataclasses.replace(sizes, flip=True) if self.flip else sizes

    def inference_settings(self) -> dict[str, InferenceSettings]:
        return {kind: InferenceSettings(self.resize_mode, self.tile_settings(kind),
                                        self.size_settings(kind))
                for kind in ("image", "video")}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser) -> None:
    """One `--flag` per RunConfig field, with its default shown in the help."""
    for f in dataclasses.fields(RunConfig):
        meta = f.metadata
        if meta.get("internal"):
            continue
        kwargs = dict(meta["argparse"])
        help_text = meta["help"]
        if f.default not in (None, False) and not kwargs.get("required"):
            help_text += f" (default: {f.default})"
        parser.add_argument(flag(f.name), dest=f.name, default=f.default, help=help_text, **kwargs)


def option_names() -> list[str]:
    return [flag(f.name) for f in dataclasses.fields(RunConfig) if not f.metadata.get("internal")]
