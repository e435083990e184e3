"""Dense optical flow between video frames, on small grey copies, and what is read from it:
scene cuts, score grids and label maps warped from one frame onto another, and label flicker.

DIS (OpenCV) on grey frames 768 pixels wide costs 8-20 milliseconds a pair on one core,
next to tens of milliseconds per model pass, and is deterministic on one OpenCV thread (as
`media.pixels` sets), so a frame gets the same flow in whichever work unit computes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from beam_seg.scores import ScoreGrid

# Flow on grey frames this wide at most. At 384 a 2048x1024 frame's poles were 2-3 pixels
# wide: DIS moved them with the background, and their warped scores landed beside them
# (pole IoU 0.30 -> 0.20 on the annotated seq0000 frame at `high`, K=2); at 768 fusion kept
# that frame's mIoU (+0.004 instead of -0.005) for about 4x the flow's cost (a few ms a pair).
FLOW_WIDTH = 768
# Mean absolute grey difference (0..255) left after warping one frame onto the other by
# their flow: at most 5.7 between consecutive frames of the Cityscapes and udacity clips,
# 26 to 61 across a cut (two aachen sequences, aachen to udacity). Measured again with the
# previous frame warped onto the next (the direction fusion uses, 2026-12-05): at most 4.4
# within the clips, 33 and 42 across those cuts.
CUT_RESIDUAL = 15.0
# A neighbour's warped scores count at a grid point in proportion to exp(-residual / this),
# the residual being the local grey difference left after warping (0..255, blurred): where
# flow fails (thin poles, occlusions) the frame keeps its own scores. On the Cityscapes
# clips, with `temporal.weights`, 25 kept the annotated frames' mIoU on average (-0.004 on
# seq0000, +0.029 on seq0001) for flicker 0.59x and 0.44x of K=0's; without match weights
# fusion lost poles and riders (-0.015 to -0.037) for 0.58x.
MATCH_SIGMA = 25.0


def small_grey(rgb: np.ndarray, width: int = FLOW_WIDTH) -> np.ndarray:
    """The frame in grey, at most `width` wide (area-averaged, aspect kept)."""
    height, full_width = rgb.shape[:2]
    out_w = min(full_width, width)
    out_h = max(8, round(height * out_w / full_width))
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (out_w, out_h), interpolation=cv2.INTER_AREA)


def dense_flow(grey_from: np.ndarray, grey_to: np.ndarray) -> np.ndarray:
    """Flow F (h x w x 2, in small-grey pixels) with grey_from(p) ~ grey_to(p + F(p))."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    return dis.calc(grey_from, grey_to, None)


def _sample_points(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height, width = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return xs + flow[..., 0], ys + flow[..., 1]


def flow_residual(grey_from: np.ndarray, grey_to: np.ndarray, flow: np.ndarray) -> float:
    """Mean absolute grey difference between `grey_from` and `grey_to` warped onto it."""
    map_x, map_y = _sample_points(flow)
    warped = cv2.remap(grey_to, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return float(cv2.absdiff(warped, grey_from).mean())


def is_cut(grey_a: np.ndarray, grey_b: np.ndarray, flow_ab: np.ndarray) -> bool:
    """A scene cut between consecutive frames a and b: motion does not explain b from a."""
    return flow_residual(grey_a, grey_b, flow_ab) > CUT_RESIDUAL


def _at_grid(image: np.ndarray, grid: ScoreGrid, width: int, height: int):
    """`image` (a small-grey-sized map of a width x height source) at the grid's points,
    and the points themselves in source pixels."""
    grid_h, grid_w = grid.shape
    xs = grid.x0 + np.arange(grid_w, dtype=np.float32) * grid.dx
    ys = grid.y0 + np.arange(grid_h, dtype=np.float32) * grid.dy
    px, py = np.meshgrid(xs, ys)
    sx, sy = image.shape[1] / width, image.shape[0] / height
    values = cv2.remap(image, ((px + 0.5) * sx - 0.5).astype(np.float32),
                       ((py + 0.5) * sy - 0.5).astype(np.float32), cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    return values, px, py, sx, sy


def match_weights(grey: np.ndarray, grey_neighbour: np.ndarray, flow: np.ndarray,
                  grid: ScoreGrid, width: int, height: int, sigma: float = MATCH_SIGMA) -> np.ndarray:
    """How well the neighbour, warped by `flow`, matches this frame at each grid point (0..1]:
    exp(-residual / sigma)."""
    map_x, map_y = _sample_points(flow)
    warped = cv2.remap(grey_neighbour, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    residual = cv2.GaussianBlur(cv2.absdiff(grey, warped).astype(np.float32), (0, 0), 2)
    at_grid = _at_grid(residual, grid, width, height)[0]
    return np.exp(-at_grid / np.float32(sigma))


def warp_grid(grid: ScoreGrid, flow: np.ndarray, width: int, height: int,
              onto: ScoreGrid | None = None) -> np.ndarray:
    """Values of a neighbour frame's `grid` (probabilities or log-probabilities), bilinear,
    sampled at the points of this frame's grid
    `onto` (default: the same points as `grid`'s) moved by `flow` (this frame -> the
    neighbour, in small-grey pixels of a width x height source)."""
    onto = onto or grid
    grid_h, grid_w = onto.shape
    moved, px, py, sx, sy = _at_grid(flow, onto, width, height)
    map_x = ((px + moved[..., 0] / sx - grid.x0) / grid.dx).astype(np.float32)
    map_y = ((py + moved[..., 1] / sy - grid.y0) / grid.dy).astype(np.float32)
    channels = grid.probs.shape[-1]
    parts = [cv2.remap(np.ascontiguousarray(grid.probs[..., i:i + 128]), map_x, map_y, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE).reshape(grid_h, grid_w, -1)
             for i in range(0, channels, 128)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)


def warp_labels(previous: Sequence[np.ndarray], flow_to_previous: np.ndarray, width: int,
                height: int) -> list[np.ndarray]:
    """The previous frame's label maps (one raster, any size) warped onto this frame's
    `width` x `height` raster, nearest: `flow_to_previous` (this frame -> the previous, in
    small-grey pixels) resized to that raster."""
    if not previous:
        return []
    flow_h, flow_w = flow_to_previous.shape[:2]
    before_h, before_w = previous[0].shape[:2]
    moved = cv2.resize(flow_to_previous, (width, height), interpolation=cv2.INTER_LINEAR)
    xs = (np.arange(width, dtype=np.float32) + 0.5) * (before_w / width) - 0.5
    ys = (np.arange(height, dtype=np.float32) + 0.5) * (before_h / height) - 0.5
    map_x = xs[None, :] + moved[..., 0] * np.float32(before_w / flow_w)
    map_y = ys[:, None] + moved[..., 1] * np.float32(before_h / flow_h)
    return [cv2.remap(labels, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
            for labels in previous]


def flicker(labels: np.ndarray, previous: np.ndarray, flow_to_previous: np.ndarray) -> float:
    """Share of pixels whose label differs from the previous frame's label map warped onto
    this frame by flow (at the flow's resolution): what changes beyond the motion."""
    height, width = flow_to_previous.shape[:2]
    now = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    before = cv2.resize(previous, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    map_x, map_y = _sample_points(flow_to_previous)
    warped = cv2.remap(before, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    return float(np.count_nonzero(now != warped) / now.size)
