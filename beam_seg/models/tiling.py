"""Sliding-window inference: cover a frame with overlapping model-sized windows and merge them.

A 513x513 model sees a 2048x1024 frame squeezed 4x: poles, signs and people vanish.
Working at a higher scale and tiling keeps them (0.49 -> ~0.70 mIoU on Cityscapes).
Models with scores: each window's class probabilities are added on the frame's score grid
with Hann weights that fall to near zero at the window's edge, so a window hands over to
its neighbour smoothly and no seam is left (`ScoreMerger`); the presets average several
working scales chosen from the source size (`Preset`). Models that output only class ids
fall back to a per-pixel vote weighted towards each window's centre (`WindowMerger`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from beam_seg.scores import hann_2d

# More windows than this for one frame means an absurd shape or setting: refused, not run.
MAX_WINDOWS = 256

# Largest per-pixel-per-class accumulator (float32 elements, 256 MB) before falling back.
MAX_ACCUMULATOR_ELEMENTS = 64_000_000


@dataclass(frozen=True)
class TileSettings:
    """`scale`: working height in model-input heights (capped at the source resolution unless
    that is smaller than one window). `aspect`: extra horizontal stretch of the working frame
    (DeepLab tolerates it well: whole-frame stretching beats padding, and a wider single row
    of windows sees objects larger for the same number of windows). `overlap`: least overlap
    of neighbouring windows as a fraction of the window. `flip`: also run each window
    mirrored and merge both."""

    scale: float = 1.0
    overlap: float = 0.25
    aspect: float = 1.0
    flip: bool = False


@dataclass(frozen=True)
class TilePlan:
    """Where one frame's windows go: the frame is resized to the working size, then cut
    into windows of the model's input size at these top-left corners."""

    work_width: int
    work_height: int
    window_width: int
    window_height: int
    origins: tuple[tuple[int, int], ...]  # (x, y) of each window in the working frame

    @property
    def count(self) -> int:
        return len(self.origins)


def _window_count(length: int, window: int, overlap: float, step: int = 1) -> int:
    """How many windows `_positions` places along `length` (counted without placing them:
    a frame refused for too many windows may need millions)."""
    if length <= window:
        return 1
    stride_max = max(1, int(window * (1 - overlap)) // step)
    return 1 + math.ceil((length - window) // step / stride_max)


def _positions(length: int, window: int, overlap: float, step: int = 1) -> list[int]:
    """Evenly spread window starts covering [0, length) with at least `overlap` x window
    shared, on multiples of `step` (length - window must be one)."""
    count = _window_count(length, window, overlap, step)
    if count == 1:
        return [0]
    span = (length - window) // step
    return [round(i * span / (count - 1)) * step for i in range(count)]


def _snap(length: int, window: int, step: int) -> int:
    """The working length nearest `length` whose windows can all start on the score grid."""
    return window + round((length - window) / step) * step if length > window else window


def plan_tiles(width: int, height: int, window_width: int, window_height: int,
               settings: TileSettings, step: int = 1) -> TilePlan:
    """Where the windows go for a frame of `width` x `height`.

    A frame that fits in one window takes one pass, stretched to the window: upsampling
    a small picture further only costs windows. With `step` > 1 (a model's score grid
    spacing, 16 for DeepLab's 33x33 logits of a 513x513 window), window origins fall on
    multiples of it, so every window's scores land on one frame-wide grid unresampled.
    """
    if width <= window_width and height <= window_height:
        return TilePlan(window_width, window_height, window_width, window_height, ((0, 0),))
    target = settings.scale * window_height
    work_height = max(window_height, min(target, height))
    factor = work_height / height
    work_width = _snap(max(window_width, round(width * factor * settings.aspect)), window_width, step)
    work_height = _snap(max(window_height, round(work_height)), window_height, step)
    count = (_window_count(work_width, window_width, settings.overlap, step)
             * _window_count(work_height, window_height, settings.overlap, step)
             * (2 if settings.flip else 1))  # a mirrored window is a pass too
    if count > MAX_WINDOWS:
        raise ValueError(f"a {width}x{height} frame would need {count} windows of "
                         f"{window_width}x{window_height} (limit {MAX_WINDOWS}); "
                         "use --quality fast or a smaller --tile-scale/--tile-aspect")
    xs = _positions(work_width, window_width, settings.overlap, step)
    ys = _positions(work_height, window_height, settings.overlap, step)
    return TilePlan(work_width, work_height, window_width, window_height,
                    tuple((x, y) for y in ys for x in xs))


def window_weights(height: int, width: int) -> np.ndarray:
    """A pyramid of weights: 1 at the centre, small (not zero) at the edges."""
    ramp_y = 1.0 - np.abs(np.linspace(-1.0, 1.0, height, dtype=np.float32))
    ramp_x = 1.0 - np.abs(np.linspace(-1.0, 1.0, width, dtype=np.float32))
    return np.minimum.outer(ramp_y, ramp_x) * 0.95 + 0.05


def crop_windows(work: np.ndarray, plan: TilePlan) -> list[np.ndarray]:
    return [work[y:y + plan.window_height, x:x + plan.window_width] for x, y in plan.origins]


class WindowMerger:
    """Accumulates window outputs one at a time (so at most one window's scores are held)
    and yields the merged working-size class ids.

    The accumulator holds one value per pixel and class; where that would pass
    MAX_ACCUMULATOR_ELEMENTS (e.g. ADE20K's 151 classes at full resolution), each pixel
    instead takes the label of the window it sits most centrally in: O(pixels) memory.
    """

    def __init__(self, plan: TilePlan, logits: bool, channels: int):
        self.plan, self.logits, self.channels = plan, logits, channels
        self.weights = window_weights(plan.window_height, plan.window_width)
        shape = (plan.work_height, plan.work_width)
        self.by_centrality = shape[0] * shape[1] * channels > MAX_ACCUMULATOR_ELEMENTS
        if self.by_centrality:
            self.best = np.full(shape, -1.0, np.float32)
            self.labels = np.zeros(shape, np.uint8)
        else:
            self.total = np.zeros((*shape, channels), np.float32)
            self.rows, self.cols = np.indices((plan.window_height, plan.window_width))

    def add(self, origin: tuple[int, int], output: np.ndarray) -> None:
        x, y = origin
        window = np.s_[y:y + self.plan.window_height, x:x + self.plan.window_width]
        if self.by_centrality:
            ids = np.argmax(output, axis=-1) if self.logits else output
            better = self.weights > self.best[window]
            self.best[window][better] = self.weights[better]
            self.labels[window][better] = ids[better]
        elif self.logits:
            self.total[window] += output.astype(np.float32) * self.weights[..., None]
        else:  # each pixel votes once per window, so plain fancy-index += is exact
            ids = np.minimum(output, self.channels - 1)
            self.total[window][self.rows, self.cols, ids] += self.weights

    def result(self) -> np.ndarray:
        if self.by_centrality:
            return self.labels
        return np.argmax(self.total, axis=-1).astype(np.uint8)


class ScoreMerger:
    """Adds window probabilities (gh x gw x C, on grid points `step` working pixels apart,
    the first at window pixel `offset`) into the frame's score grid with Hann weights.

    Origins are multiples of `step` (see `plan_tiles`), so a window's grid points are a
    block of the frame's grid: memory is the frame's grid, a 1/step^2 of its pixels.
    """

    def __init__(self, plan: TilePlan, step: int, offset: float):
        self.plan, self.step, self.offset = plan, step, offset
        self.grid_height = (plan.work_height - 1 - round(offset)) // step + 1
        self.grid_width = (plan.work_width - 1 - round(offset)) // step + 1
        self.total: np.ndarray | None = None
        self.weight = np.zeros((self.grid_height, self.grid_width), np.float32)

    def add(self, origin: tuple[int, int], probs: np.ndarray) -> None:
        height, width, channels = probs.shape
        if self.total is None:
            self.total = np.zeros((self.grid_height, self.grid_width, channels), np.float32)
        x, y = origin[0] // self.step, origin[1] // self.step
        height, width = min(height, self.grid_height - y), min(width, self.grid_width - x)
        weights = hann_2d(probs.shape[0], probs.shape[1])[:height, :width]
        self.total[y:y + height, x:x + width] += probs[:height, :width] * weights[..., None]
        self.weight[y:y + height, x:x + width] += weights

    def result(self) -> np.ndarray:
        """The weighted mean probabilities (gh x gw x C) on the working frame's grid."""
        return self.total / np.maximum(self.weight, np.float32(1e-12))[..., None]


@dataclass(frozen=True)
class Preset:
    """A quality preset: the working scales that are averaged, chosen from the source size.

    Rows of windows at the model's own height, the whole frame, or windows at the source's
    own resolution: finer scales than the model's height lost on the US dashcam frames at
    every size measured (docs/quality.md, "Larger frames"). `rows`: (aspect, overlap) of the
    rows taken on every frame. `whole_max_aspect`: on frames no wider than this (16:9
    dashcam yes, 2:1 Cityscapes no: squeezing a wide frame costs more than its context
    gives) also one pass over the whole frame and the `whole_rows`, another look at the
    model's height stretched otherwise; `mirror_rows`: there every row also runs mirrored.
    `flip`: every window mirrored too, on every frame (`--flip`).
    `wide_native`: on frames wider than `whole_max_aspect` but at most `native_max_aspect`,
    and at least this many windows high, one scale replaces the rows: windows at the
    source's own resolution, not stretched, overlapping by `native_overlap`, mirrored (0:
    never), at most `native_max_height` windows high (a bound on the cost of huge frames).
    DeepLab's Cityscapes models learnt at full resolution, and on 2:1 frames that scale
    alone, mirrored, beat every mix with smaller ones of up to 34 windows
    (docs/quality-log.md, "Third round"); on wider frames (KITTI's 3.3:1 at twice its size)
    it lost to one row at the model's height.
    """

    rows: tuple[tuple[float, float], ...] = ((1.0, 0.25),)
    whole_max_aspect: float = 0.0
    whole_rows: tuple[tuple[float, float], ...] = ()
    mirror_rows: bool = False
    flip: bool = False
    wide_native: float = 0.0
    native_overlap: float = 0.25
    native_max_aspect: float = math.inf
    native_max_height: float = math.inf

    def scales(self, width: int, height: int, window_width: int,
               window_height: int) -> list[TileSettings | None]:
        """The TileSettings of each working scale for this source; None is the whole frame."""
        if width <= window_width and height <= window_height:
            return [None]
        if width / height > self.whole_max_aspect:
            if (self.wide_native and height >= self.wide_native * window_height
                    and width / height <= self.native_max_aspect):
                work = min(height, self.native_max_height * window_height)
                return [TileSettings(scale=work / window_height, overlap=self.native_overlap, flip=True)]
            return [TileSettings(aspect=aspect, overlap=overlap, flip=self.flip)
                    for aspect, overlap in self.rows]
        flip = self.flip or self.mirror_rows
        # the whole frame first, so that the last scale stays the largest (the one ids-only
        # models vote at)
        return [None, *(TileSettings(aspect=aspect, overlap=overlap, flip=flip)
                        for aspect, overlap in (*self.whole_rows, *self.rows))]
