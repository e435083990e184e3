"""Per-class scores on a coarse grid, and the pure functions that merge and read them.

A model's logits come at a fraction of the input's resolution (33x33 for a 513x513 input).
Everything that combines scores (overlapping windows, working scales, neighbouring video
frames) works on such grids, as probabilities, so a frame's scores stay small (a 2048x1024
frame at `balanced` is about 33x86x19 floats) and a video can hold several of them. Label
maps come last: log-probabilities upsampled bilinearly, then argmax. Upsampling
log-probabilities rather than probabilities matches the model's own resize of its logits
(on the aachen frames 0.604 against 0.582 mIoU for probabilities, `balanced`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# OpenCV's warps take at most this many channels at once (150 fail): wider maps go in chunks.
MAX_WARP_CHANNELS = 128


@dataclass(frozen=True)
class ScoreGrid:
    """Class probabilities `probs` (gh x gw x C, float32) at grid points (i, j) that sit at
    source pixel (x0 + j*dx, y0 + i*dy) (pixel centres at integers)."""

    probs: np.ndarray
    x0: float
    y0: float
    dx: float
    dy: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.probs.shape[0], self.probs.shape[1]

    def like(self, probs: np.ndarray) -> ScoreGrid:
        return ScoreGrid(probs, self.x0, self.y0, self.dx, self.dy)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def hann(n: int) -> np.ndarray:
    """A Hann window without its zero end points: weights fall smoothly to near zero at a
    window's edge (so neighbours take over without a seam) but never reach it (so a frame
    border that only one window covers still has a weight)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(n) + 1) / (n + 1))).astype(np.float32)


def hann_2d(height: int, width: int) -> np.ndarray:
    return np.outer(hann(height), hann(width))


def warp_affine(values: np.ndarray, matrix: np.ndarray, width: int, height: int,
                interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """`values` (h x w x C) sampled at out pixel (u, v) -> matrix @ (u, v, 1), borders replicated."""
    if values.shape[-1] > MAX_WARP_CHANNELS:
        return np.concatenate([
            warp_affine(np.ascontiguousarray(values[..., i:i + MAX_WARP_CHANNELS]), matrix, width,
                        height, interpolation)
            for i in range(0, values.shape[-1], MAX_WARP_CHANNELS)], axis=-1)
    out = cv2.warpAffine(values, matrix.astype(np.float32), (width, height),
                         flags=interpolation | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(height, width, values.shape[-1])


def _to_grid(grid: ScoreGrid, x0: float, y0: float, dx: float, dy: float) -> np.ndarray:
    """The affine map from points (x0 + u*dx, y0 + v*dy) to `grid`'s indices."""
    return np.array([[dx / grid.dx, 0, (x0 - grid.x0) / grid.dx],
                     [0, dy / grid.dy, (y0 - grid.y0) / grid.dy]], np.float64)


def resample(grid: ScoreGrid, onto: ScoreGrid) -> np.ndarray:
    """`grid`'s probabilities at the points of `onto` (bilinear), shaped like onto.probs."""
    height, width = onto.shape
    return warp_affine(grid.probs, _to_grid(grid, onto.x0, onto.y0, onto.dx, onto.dy), width, height)


def refined_log(grid: ScoreGrid, factor: int, points: ScoreGrid | None = None) -> ScoreGrid:
    """`grid`'s log-probabilities, bilinear, at the points of `points` (default: `grid`
    itself) with `factor` times as many between each two: the interpolation its label map
    makes anyway, so its labels do not change."""
    points = points or grid
    if factor == 1 and points is grid:
        return grid.like(np.log(np.maximum(grid.probs, np.float32(1e-12))))
    height, width = ((n - 1) * factor + 1 for n in points.shape)
    onto = ScoreGrid(grid.probs[:0, :0], points.x0, points.y0, points.dx / factor, points.dy / factor)
    log_probs = np.log(np.maximum(grid.probs, np.float32(1e-12)))
    matrix = _to_grid(grid, onto.x0, onto.y0, onto.dx, onto.dy)
    return onto.like(warp_affine(log_probs, matrix, width, height))


def mean_grid(grids: list[ScoreGrid]) -> ScoreGrid:
    """The average of several grids of one frame, on the finest of them."""
    finest = min(grids, key=lambda g: g.dx * g.dy)
    total = finest.probs.copy()
    for grid in grids:
        if grid is not finest:
            total += resample(grid, finest)
    total /= len(grids)
    return finest.like(total)


def labels_from_scores(grid: ScoreGrid, width: int, height: int,
                       out_width: int | None = None, out_height: int | None = None) -> np.ndarray:
    """Class ids of a `width` x `height` source, computed on an `out` raster covering it (the
    source itself by default): bilinear log-probabilities, argmax.

    A class competes only around the grid points where it is first or second (within one
    grid cell of them): a small object often peaks between grid points, second at each of
    them, but a class that is neither at any of a cell's corners almost never wins inside
    it. Each class's plane is warped over that box alone, so the cost follows the frame's
    area rather than its area times the classes.
    """
    return sticky_labels(grid, width, height, out_width, out_height)[0]


def sticky_labels(grid: ScoreGrid, width: int, height: int, out_width: int | None = None,
                  out_height: int | None = None, priors: Sequence[np.ndarray] = (),
                  bonus: float = 0.0) -> list[np.ndarray]:
    """`labels_from_scores`'s ids, then for each of `priors` (out-raster label maps) the ids
    again with `bonus` added to the log-probability of the class the prior names at each
    pixel: the prior's class wins where its log-probability plus the bonus beats the best
    one (near ties, mostly along boundaries), elsewhere the scores decide as before. The
    prior's log-probability is read only at the pixels where prior and ids differ."""
    out_width, out_height = out_width or width, out_height or height
    sx, sy = width / out_width, height / out_height
    matrix = _to_grid(grid, 0.5 * sx - 0.5, 0.5 * sy - 0.5, sx, sy)
    log_probs = np.log(np.maximum(grid.probs, np.float32(1e-12)))
    ranked = np.argsort(-grid.probs, axis=-1)[..., :2]  # the top two classes of each point
    ids = np.zeros((out_height, out_width), np.uint8)
    best = np.full((out_height, out_width), -np.inf, np.float32)
    for c in np.unique(ranked):
        rows, cols = np.nonzero((ranked == c).any(axis=-1))
        x0, x1 = _pixel_span(cols.min() - 1, cols.max() + 1, matrix[0, 0], matrix[0, 2], out_width)
        y0, y1 = _pixel_span(rows.min() - 1, rows.max() + 1, matrix[1, 1], matrix[1, 2], out_height)
        if x0 >= x1 or y0 >= y1:
            continue
        box = matrix.copy()
        box[0, 2] += box[0, 0] * x0
        box[1, 2] += box[1, 1] * y0
        plane = warp_affine(np.ascontiguousarray(log_probs[..., c:c + 1]), box, x1 - x0, y1 - y0)[..., 0]
        window = np.s_[y0:y1, x0:x1]
        wins = plane > best[window]
        ids[window][wins] = c
        np.maximum(best[window], plane, out=best[window])
    leaning = []
    for prior in priors:
        ys, xs = np.nonzero(prior != ids)
        classes = prior[ys, xs]
        score = _bilinear_at(log_probs, matrix, xs, ys, classes) + np.float32(bonus)
        take = score > best[ys, xs]
        out = ids.copy()
        out[ys[take], xs[take]] = classes[take]
        leaning.append(out)
    return [ids, *leaning]


def _bilinear_at(values: np.ndarray, matrix: np.ndarray, xs: np.ndarray, ys: np.ndarray,
                 channels: np.ndarray) -> np.ndarray:
    """values[..., channel] at out pixels (xs, ys) mapped by `matrix` onto the grid, bilinear
    with borders replicated (as `warp_affine`), one channel per pixel."""
    height, width = values.shape[:2]
    gx = np.clip(matrix[0, 0] * xs + matrix[0, 2], 0, width - 1).astype(np.float32)
    gy = np.clip(matrix[1, 1] * ys + matrix[1, 2], 0, height - 1).astype(np.float32)
    x0 = np.minimum(gx.astype(np.int64), max(width - 2, 0))
    y0 = np.minimum(gy.astype(np.int64), max(height - 2, 0))
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = gx - x0, gy - y0
    top = values[y0, x0, channels] * (1 - fx) + values[y0, x1, channels] * fx
    bottom = values[y1, x0, channels] * (1 - fx) + values[y1, x1, channels] * fx
    return top * (1 - fy) + bottom * fy


def _pixel_span(first: float, last: float, scale: float, shift: float, size: int) -> tuple[int, int]:
    """The output pixels whose grid coordinate (scale * u + shift) lies in [first, last]."""
    lo = int(np.floor((first - shift) / scale))
    hi = int(np.ceil((last - shift) / scale)) + 1
    return max(0, lo), min(size, hi)


def confidence(grid: ScoreGrid) -> float:
    """Mean top-class probability over the frame's grid points."""
    return float(grid.probs.max(axis=-1).mean())
