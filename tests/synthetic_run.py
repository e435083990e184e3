"""A run's outputs made without a model, from hand-drawn label maps, through the same
functions the pipeline writes with (coverage rows with region columns, overlays, the mp4
encoder, the events file): fast tests of everything that reads a run."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from beam_seg.labels import CITYSCAPES
from beam_seg.media import render, video
from beam_seg.tables import coverage, events, regions

FPS, FRAMES, WIDTH, HEIGHT = 10, 30, 320, 180
IID = "drive-0123abcd"
CAR_FRAMES = range(10, 20)  # a car covers 4% of these frames, so there is one car event


def _label_map(index: int) -> np.ndarray:
    ids = np.full((HEIGHT, WIDTH), CITYSCAPES.id_of("sky"), np.uint8)
    ids[HEIGHT // 2:] = CITYSCAPES.id_of("road")
    ids[: HEIGHT // 2, : WIDTH // 4] = CITYSCAPES.id_of("building")
    if index in CAR_FRAMES:
        ids[110:146, 140:204] = CITYSCAPES.id_of("car")  # 36 x 64 = 2304 px = 4% of the frame
    return ids


def write_synthetic_run(out: Path) -> None:
    """One video's outputs, as the pipeline lays them out."""
    rng = np.random.default_rng(1)
    rows = []
    (out / "overlays" / IID).mkdir(parents=True)
    (out / "videos").mkdir(parents=True)
    with video.VideoWriter(str(out / "videos" / f"{IID}.mp4"), WIDTH, HEIGHT, Fraction(FPS)) as writer:
        for index in range(FRAMES):
            ids = _label_map(index)
            rgb = rng.integers(0, 255, (HEIGHT, WIDTH, 3), np.uint8)
            blended = render.overlay(rgb, ids, CITYSCAPES.palette, 0.5)
            writer.write(blended)
            overlay_uri = f"overlays/{IID}/{index:06d}.jpg"
            (out / overlay_uri).write_bytes(render.encode_image(blended, "jpg"))
            counts = coverage.class_counts(ids, CITYSCAPES.num_classes)
            base = {"source_uri": f"/drives/{IID}.mp4", "input_id": IID, "kind": "video",
                    "frame_index": index, "timestamp_s": index / FPS, "width": WIDTH,
                    "height": HEIGHT, "model": "hand-drawn", "label_set": "cityscapes",
                    "label_uri": f"labels/{IID}/{index:06d}.png", "overlay_uri": overlay_uri,
                    "confidence": None, "flicker": None}  # as from a model that gives only ids
            rows.append(coverage.coverage_row(base, counts, CITYSCAPES, regions.region_values(
                ids, counts, CITYSCAPES, regions.RegionSettings())))
    (out / "coverage" / IID).mkdir(parents=True)
    (out / "coverage" / IID / "segment-00000.parquet").write_bytes(coverage.parquet_bytes(rows, CITYSCAPES))
    events.write_input_events(str(out / "coverage" / IID / "*.parquet"),
                              str(out / "events" / f"{IID}.parquet"), events.EventSettings())
