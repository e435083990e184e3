"""Quality presets for models that take any input size (EfficientViT-Seg through ONNX).

A fixed-size model sees a frame through windows (`tiling.Preset`); a model of any size sees
the whole frame at a working size instead, so a preset is a choice of working sizes: one
for `fast`, several (and mirrored copies) for the others, averaged on the finest score grid.
Passes of one size go to the model in one batched call. The figures behind each preset's
choice are in docs/models.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from beam_seg.media.pixels import resize_linear
from beam_seg.models.interface import Model, ModelInfo
from beam_seg.models.placement import Placement, output_grid
from beam_seg.scores import ScoreGrid, mean_grid


@dataclass(frozen=True)
class SizePreset:
    """Working sizes for a model of any size, chosen from the source frame.

    The base size is the source's own, enlarged to at least `min_height` rows (a small frame
    gives the network too few pixels per object) and shrunk to at most `max_pixels`, both
    keeping the aspect ratio, then each side rounded to the model's multiple. `scales`
    multiply the base size (each a pass, averaged); `flip` adds each pass mirrored.
    `wide_scales`: the scales of frames wider than `WIDE_ASPECT` (None: `scales`). KITTI's
    3.3:1 frames lost mIoU to a 1.5 scale that every other set gained from, and since frames
    are darkened to Cityscapes' level (`pixels.darken_to_mean`) to the 0.75 and 1.25 ones too.
    """

    scales: tuple[float, ...] = (1.0,)
    min_height: int = 512
    max_pixels: int = 1024 * 2048
    flip: bool = False
    wide_scales: tuple[float, ...] | None = None

    def sizes(self, width: int, height: int, multiple: int) -> list[tuple[int, int]]:
        """(width, height) of each pass, duplicates dropped, in the order of `scales`."""
        base = min(max(1.0, self.min_height / height), (self.max_pixels / (width * height)) ** 0.5)
        found: list[tuple[int, int]] = []
        wide = width / height > WIDE_ASPECT and self.wide_scales is not None
        for scale in self.wide_scales if wide else self.scales:
            size = (_round_to(width * base * scale, multiple), _round_to(height * base * scale, multiple))
            if size not in found:
                found.append(size)
        return found


WIDE_ASPECT = 2.5


def _round_to(length: float, multiple: int) -> int:
    return max(multiple, round(length / multiple) * multiple)


def score_any_size(model: Model, frame: np.ndarray, preset: SizePreset,
                   info: ModelInfo) -> tuple[ScoreGrid, tuple[int, int]]:
    """A frame through every working size of `preset` -> its mean score grid and label raster
    (the largest working size, never above the source)."""

    height, width = frame.shape[:2]
    spec = info.input_spec
    grids = []
    sizes = preset.sizes(width, height, spec.multiple)
    for work_w, work_h in sizes:
        work = resize_linear(frame, work_w, work_h)
        batch = [work, work[:, ::-1]] if preset.flip else [work]
        outputs = model.predict(spec.encode(np.stack(batch)))
        place = Placement(0, 0, work_w, work_h)
        for output, flipped in zip(outputs, (False, True), strict=False):
            grid, _ = output_grid(output[:, ::-1] if flipped else output, info, place, work_w, work_h,
                                  width, height)
            grids.append(grid)
    raster = (min(width, max(w for w, _ in sizes)), min(height, max(h for _, h in sizes)))
    return (grids[0] if len(grids) == 1 else mean_grid(grids)), raster


# Named like the fixed-size presets (`scoring.QUALITY_PRESETS`); chosen on the dev sets
# (bdd100k, kitti, cityscapes val; never the aachen training frames alone), each no worse
# than the one under it on any of them: docs/models.md has the table. Mirrored passes were
# left out: they helped the US frames and hurt KITTI and Cityscapes.
# On frames wider than 2.5:1 (KITTI) every preset takes the one pass of `fast`: there, with
# the exposure step, B0 scored 0.418 at scale 1 against 0.415 with 1.25 added and 0.414 with
# 0.75 too (before the step the larger scales had gained 0.002-0.004: noise on 5 frames either
# way, so the cheaper and ordered choice).
SIZE_PRESETS: dict[str, SizePreset] = {
    "fast": SizePreset(),
    "balanced": SizePreset(scales=(1.0, 1.25), wide_scales=(1.0,)),
    "high": SizePreset(scales=(0.75, 1.0, 1.25, 1.5), wide_scales=(1.0,)),
}
