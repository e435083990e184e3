"""Resizing a frame to a model's input, and its output back onto the frame: pure functions.

A model with a fixed input (513x513) sees the frame stretched or padded to it
(`fit_to_input`); `labels_to_source` undoes that for a label map, and `output_grid` places
a pass's scores on the frame's own grid. Models that take any size get the frame as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from beam_seg.media.pixels import resize_linear, resize_nearest
from beam_seg.models.interface import InputSpec, ModelInfo
from beam_seg.scores import ScoreGrid, softmax

RESIZE_MODES = ("stretch", "pad")


@dataclass(frozen=True)
class Placement:
    """Where the source frame sits inside the model input: scaled to (w, h) at (x, y)."""

    x: int
    y: int
    width: int
    height: int


def fit_to_input(rgb: np.ndarray, spec: InputSpec, mode: str = "stretch") -> tuple[np.ndarray, Placement]:
    """Map a frame onto the model's fixed input.

    'stretch' scales each axis independently; 'pad' keeps the aspect ratio and pads the
    rest with mid-grey (the value DeepLab normalises to 0). On 2:1 Cityscapes frames
    stretching scores higher (0.49 vs 0.44 mIoU), hence the default.
    """
    height, width = rgb.shape[:2]
    if not spec.fixed_size:
        return rgb, Placement(0, 0, width, height)
    if mode == "stretch":
        return resize_linear(rgb, spec.width, spec.height), Placement(0, 0, spec.width, spec.height)
    if mode != "pad":
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}")
    scale = min(spec.width / width, spec.height / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    canvas = np.full((spec.height, spec.width, 3), 128, np.uint8)
    x, y = (spec.width - new_w) // 2, (spec.height - new_h) // 2
    canvas[y:y + new_h, x:x + new_w] = resize_linear(rgb, new_w, new_h)
    return canvas, Placement(x, y, new_w, new_h)


def to_class_ids(output: np.ndarray, logits: bool) -> np.ndarray:
    """A model output (HxW ids or HxWxC scores) -> HxW uint8 class ids."""
    ids = np.argmax(output, axis=-1) if logits else output
    return ids.astype(np.uint8, copy=False)


def labels_to_source(ids: np.ndarray, placement: Placement, width: int, height: int) -> np.ndarray:
    """Undo `fit_to_input`: crop the padding away and upsample (nearest) to the source size."""
    crop = ids[placement.y:placement.y + placement.height, placement.x:placement.x + placement.width]
    return resize_nearest(crop, width, height)


def window_scores(output: np.ndarray, window_width: int, window_height: int,
                  align_corners: bool) -> tuple[np.ndarray, int, float]:
    """A window's logits -> (probabilities on its grid, grid step, first point) in window
    pixels. Full-resolution outputs are thinned to a step of up to 8 (their logits come
    from a stride-8 or -16 network, upsampled: nothing is lost, memory drops 64x)."""
    height, width = output.shape[:2]
    if (height, width) != (window_height, window_width):
        if align_corners and height > 1 and width > 1:
            step_x, step_y, offset = (window_width - 1) / (width - 1), (window_height - 1) / (height - 1), 0.0
        else:
            step_x, step_y = window_width / width, window_height / height
            offset = (step_x - 1) / 2
        if step_x == step_y and float(step_x).is_integer():
            return softmax(output), int(step_x), offset
        output = cv2.resize(output, (window_width, window_height), interpolation=cv2.INTER_LINEAR)
    step = next(d for d in (8, 4, 2, 1) if (window_width - 1) % d == 0 and (window_height - 1) % d == 0)
    return softmax(output[::step, ::step]), step, 0.0


def output_grid(output: np.ndarray, info: ModelInfo, place: Placement, in_width: int,
                in_height: int, width: int, height: int) -> tuple[ScoreGrid, tuple[int, int]]:
    """A whole-frame pass's logits -> the source frame's score grid and label raster."""
    probs, step, offset = window_scores(output, in_width, in_height, info.align_corners)
    sx, sy = width / place.width, height / place.height
    grid = ScoreGrid(probs, (offset - place.x + 0.5) * sx - 0.5, (offset - place.y + 0.5) * sy - 0.5,
                     step * sx, step * sy)
    return grid, (place.width, place.height)
