"""A frame's scores or labels, by quality preset: one pass over the whole frame, or windows
merged by their Hann weights (models with scores) or a centre-weighted vote (models that
give only ids), at the working scales the preset chooses from the source size.

Every label map of a model with scores is made by `labels_of`, from a score grid: here for
frames that are not fused, in temporal fusion for those that are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from beam_seg.media.pixels import darken_to_mean, resize_linear, resize_nearest
from beam_seg.models import Model
from beam_seg.models.anysize import SizePreset, score_any_size
from beam_seg.models.interface import ModelInfo
from beam_seg.models.placement import (
    Placement,
    fit_to_input,
    labels_to_source,
    output_grid,
    to_class_ids,
    window_scores,
)
from beam_seg.models.tiling import (
    Preset,
    ScoreMerger,
    TileSettings,
    WindowMerger,
    crop_windows,
    plan_tiles,
)
from beam_seg.scores import ScoreGrid, labels_from_scores, mean_grid


@dataclass(frozen=True)
class InferenceSettings:
    """How frames meet the model: one resized pass, or sliding windows (`tiles`: one
    working scale, or a `Preset` of several chosen from the source size). `sizes`: the
    working sizes of models that take any size (None: the source's own size)."""

    resize_mode: str = "stretch"
    tiles: TileSettings | Preset | None = None
    sizes: SizePreset | None = None


QUALITY_PRESETS: dict[str, Preset | None] = {
    "fast": None,  # one pass over the whole frame
    # one row of windows at the model's height, 4/3 wide (4 windows on 2048x1024 and on
    # 1280x720), plus the whole frame on frames up to 16:9 wide: on the US dashcam dev set
    # (bdd100k) 0.274 mIoU against 0.268 without it; 2:1 Cityscapes frames are left as they were
    "balanced": Preset(rows=((4 / 3, 1 / 3),), whole_max_aspect=1.8),
    # balanced's row; on frames up to 16:9 also a second row at the model's height, not
    # stretched, and both rows mirrored (16:9 at any size: 1 + 8 + 6 = 15 passes, 3x balanced).
    # Chosen on the 16:9 dev sets (docs/quality-log.md, bootstrap over frames): the unstretched
    # row took bdd100k 0.274 -> 0.278 and synthetic-bdd100k/-kitti/-aachen +0.007/+0.011/
    # +0.012; mirroring +0.005 more on bdd100k. No finer scale there: at 720 (1.4 windows)
    # it gains person and rider but loses sidewalk, sky and road (bdd100k 0.284 -> 0.277);
    # with windows at 3/4 and all of the source height, as high took on frames from about
    # 1323x744 up, bdd100k scaled to 1920x1080 scored 0.308 and at 3840x2160 0.280 (below
    # `fast`) against 0.327 and 0.327 without them, at 2.5x and 7x the passes.
    # Frames wider than 16:9 up to 2.2:1 and at least 1.1 windows high (2:1 Cityscapes-like
    # frames from 1152x576 up) take only windows at the source's own resolution (at most 4
    # windows high, which bounds huge frames' cost), mirrored: 30 on 2048x1024, where they
    # beat the mix of 513, 768 and 1024 (aachen stills 0.669 -> 0.703, the seq0000 clip's
    # frame 0.659 -> 0.678), and at 1536 and 1280 wide likewise. Wider frames (KITTI at
    # 3.3:1: scaled to 2448x740 that scale scored 0.306 against balanced's row 0.369; 2.2
    # lies between the shapes measured) and lower wide frames (1024x512, KITTI) keep
    # balanced's row: mirroring it cost kitti 0.011
    "high": Preset(rows=((4 / 3, 1 / 3),), whole_max_aspect=1.8, whole_rows=((1.0, 0.25),),
                   mirror_rows=True, wide_native=1.1, native_overlap=0.25, native_max_aspect=2.2,
                   native_max_height=4.0),
}


@dataclass(frozen=True)
class Segmentation:
    """A frame's model output: class ids at source size (None until made from `scores`),
    and class probabilities on a coarse grid (None for models that give only ids).
    `raster`: the (width, height) on which labels are taken from the scores before a
    nearest upsample to the source (the finest working frame, never above the source)."""

    labels: np.ndarray | None
    scores: ScoreGrid | None
    raster: tuple[int, int]

    def with_labels(self, width: int, height: int) -> Segmentation:
        if self.labels is not None:
            return self
        return Segmentation(labels_of(self.scores, width, height, self.raster), self.scores, self.raster)


def labels_of(scores: ScoreGrid, width: int, height: int, raster: tuple[int, int]) -> np.ndarray:
    """Source-size class ids from a score grid, through its label raster."""
    out_w, out_h = min(raster[0], width), min(raster[1], height)
    ids = labels_from_scores(scores, width, height, out_w, out_h)
    return resize_nearest(ids, width, height)


def _predict(model: Model, spec, windows: list[np.ndarray], batch_size: int = 4) -> list[np.ndarray]:
    outputs = []
    for start in range(0, len(windows), batch_size):
        outputs.extend(model.predict(spec.encode(np.stack(windows[start:start + batch_size]))))
    return outputs


def score_whole(model: Model, frame: np.ndarray, info: ModelInfo,
                resize_mode: str = "stretch") -> tuple[ScoreGrid, tuple[int, int]]:
    """One pass over the whole frame -> its score grid and label raster."""
    prepared, place = fit_to_input(frame, info.input_spec, resize_mode)
    output = model.predict(info.input_spec.encode(prepared[None]))[0]
    return output_grid(output, info, place, prepared.shape[1], prepared.shape[0],
                       frame.shape[1], frame.shape[0])


def labels_from_output(output: np.ndarray, info: ModelInfo, place: Placement, in_width: int,
                       in_height: int, width: int, height: int) -> np.ndarray:
    """Source-size class ids from one whole-frame pass's output, as `fast` makes them (for
    benchmarks that time the stages apart)."""
    if not info.outputs_logits:
        return labels_to_source(to_class_ids(output, False), place, width, height)
    grid, raster = output_grid(output, info, place, in_width, in_height, width, height)
    return labels_of(grid, width, height, raster)


def score_tiled(model: Model, frame: np.ndarray, tiles: TileSettings,
                info: ModelInfo) -> tuple[ScoreGrid, tuple[int, int]]:
    """One working scale: Hann-weighted window probabilities on the working frame's grid."""
    spec = info.input_spec
    height, width = frame.shape[:2]
    step = _grid_step(model, spec, info)
    plan = plan_tiles(width, height, spec.width, spec.height, tiles, step)
    work = resize_linear(frame, plan.work_width, plan.work_height)
    jobs = [(origin, window, False) for origin, window in zip(plan.origins, crop_windows(work, plan),
                                                              strict=True)]
    if tiles.flip:
        jobs += [(origin, window[:, ::-1], True) for origin, window, _ in jobs]
    merger = None
    outputs = _predict(model, spec, [window for _, window, _ in jobs])
    for (origin, _, flipped), output in zip(jobs, outputs, strict=True):
        probs, grid_step, offset = window_scores(output, spec.width, spec.height, info.align_corners)
        if merger is None:
            merger = ScoreMerger(plan, grid_step, offset)
        merger.add(origin, probs[:, ::-1] if flipped else probs)
    sx, sy = width / plan.work_width, height / plan.work_height
    grid = ScoreGrid(merger.result(), (merger.offset + 0.5) * sx - 0.5, (merger.offset + 0.5) * sy - 0.5,
                     merger.step * sx, merger.step * sy)
    return grid, (plan.work_width, plan.work_height)


_STEPS: dict[tuple[str, int, int], int] = {}


def _grid_step(model: Model, spec, info: ModelInfo) -> int:
    """The model's score grid step in window pixels: from its output shape where the loader
    knows it, else found once by one probe inference."""
    if info.score_size is not None:
        output = np.zeros((*info.score_size, 1), np.float32)
        return window_scores(output, spec.width, spec.height, info.align_corners)[1]
    key = (info.name, spec.width, spec.height)
    if key not in _STEPS:
        blank = np.zeros((1, spec.height, spec.width, 3), np.uint8)
        output = model.predict(spec.encode(blank))[0]
        _STEPS[key] = window_scores(output, spec.width, spec.height, info.align_corners)[1]
    return _STEPS[key]


def score_frame(model: Model, frame: np.ndarray, settings: InferenceSettings,
                info: ModelInfo) -> Segmentation:
    """A frame through every working scale of its settings, averaged (scores models)."""
    height, width = frame.shape[:2]
    spec = info.input_spec
    if not spec.fixed_size and settings.sizes is not None:
        grid, raster = score_any_size(model, frame, settings.sizes, info)
        return Segmentation(None, grid, raster)
    tiles = settings.tiles if spec.fixed_size else None
    scales = tiles.scales(width, height, spec.width, spec.height) if isinstance(tiles, Preset) else [tiles]
    grids, rasters = [], []
    for scale in scales:
        grid, raster = (score_whole(model, frame, info, settings.resize_mode) if scale is None
                        else score_tiled(model, frame, scale, info))
        grids.append(grid)
        rasters.append(raster)
    raster = (max(w for w, _ in rasters), max(h for _, h in rasters))
    return Segmentation(None, grids[0] if len(grids) == 1 else mean_grid(grids), raster)


def score_frames(model: Model, frames: Sequence[np.ndarray],
                 settings: InferenceSettings = InferenceSettings(),
                 labels: bool = True) -> list[Segmentation]:
    """Segmentations of a batch of RGB frames of any sizes. With `labels=False`, models
    with scores leave the label maps to the caller (temporal fusion makes them later)."""
    info = model.describe()
    frames = [darken_to_mean(frame, info.exposure_mean) for frame in frames]
    if not info.outputs_logits:
        return [Segmentation(ids, None, (ids.shape[1], ids.shape[0]))
                for ids in _segment_ids(model, frames, settings, info)]
    results = [score_frame(model, frame, settings, info) for frame in frames]
    if labels:
        results = [r.with_labels(f.shape[1], f.shape[0]) for r, f in zip(results, frames, strict=True)]
    return results


def segment_frames(model: Model, frames: Sequence[np.ndarray],
                   settings: InferenceSettings = InferenceSettings()) -> list[np.ndarray]:
    """Label maps (uint8, source size) for a batch of RGB frames of any sizes."""
    return [result.labels for result in score_frames(model, frames, settings)]


def _segment_ids(model: Model, frames: Sequence[np.ndarray], settings: InferenceSettings,
                 info: ModelInfo) -> list[np.ndarray]:
    """Models that output only class ids: windows merged by a centre-weighted vote at the
    preset's largest scale (the path every model took before scores)."""
    spec = info.input_spec
    tiles = settings.tiles
    if isinstance(tiles, Preset):
        height, width = frames[0].shape[:2] if frames else (0, 0)
        tiles = [t for t in tiles.scales(width, height, spec.width or 1, spec.height or 1)
                 if t is not None][-1:] or [None]
        tiles = tiles[0]
    if tiles is not None and spec.fixed_size:
        return [segment_tiled(model, frame, InferenceSettings(settings.resize_mode, tiles), info)
                for frame in frames]
    prepared = [fit_to_input(frame, spec, settings.resize_mode) for frame in frames]
    if spec.fixed_size:
        outputs = model.predict(spec.encode(np.stack([p for p, _ in prepared])))
    else:
        outputs = [model.predict(spec.encode(p[None]))[0] for p, _ in prepared]
    return [
        labels_to_source(to_class_ids(out, info.outputs_logits), placement, f.shape[1], f.shape[0])
        for out, (_, placement), f in zip(outputs, prepared, frames, strict=True)
    ]


def segment_tiled(model: Model, frame: np.ndarray, settings: InferenceSettings,
                  info: ModelInfo | None = None, batch_size: int = 4) -> np.ndarray:
    """Class ids through overlapping windows at one working scale, merged by vote (models
    without scores), at source size."""
    info = info or model.describe()
    spec = info.input_spec
    height, width = frame.shape[:2]
    plan = plan_tiles(width, height, spec.width, spec.height, settings.tiles)
    work = resize_linear(frame, plan.work_width, plan.work_height)
    jobs = [(origin, window, False) for origin, window in zip(plan.origins, crop_windows(work, plan),
                                                              strict=True)]
    if settings.tiles.flip:
        jobs += [(origin, window[:, ::-1], True) for origin, window, _ in jobs]
    merger = None
    outputs = _predict(model, spec, [window for _, window, _ in jobs], batch_size)
    for (origin, _, flipped), output in zip(jobs, outputs, strict=True):
        if merger is None:
            channels = output.shape[-1] if info.outputs_logits else info.num_classes
            merger = WindowMerger(plan, info.outputs_logits, channels)
        merger.add(origin, output[:, ::-1] if flipped else output)
    work_ids = merger.result()
    return labels_to_source(work_ids, Placement(0, 0, plan.work_width, plan.work_height), width, height)
