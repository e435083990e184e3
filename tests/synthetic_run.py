"""A run's outputs made without a model, from hand-drawn label maps, through the same
functions the pipeline writes with (coverage rows with region columns, overlays, the mp4
encoder, the events file): fast tests of everything that reads a run."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np

from beam_seg import naming
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


def write_synthetic_run(out: Path, model: str = "hand-drawn", confidence: float | None = None) -> None:
    """One video's outputs, as the pipeline lays them out (`confidence`: every frame's; None
    as from a model that gives only ids)."""
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
                    "height": HEIGHT, "model": model, "label_set": "cityscapes",
                    "label_uri": f"labels/{IID}/{index:06d}.png", "overlay_uri": overlay_uri,
                    "confidence": confidence, "flicker": None}
            rows.append(coverage.coverage_row(base, counts, CITYSCAPES, regions.region_values(
                ids, counts, CITYSCAPES, regions.RegionSettings())))
    (out / "coverage" / IID).mkdir(parents=True)
    (out / "coverage" / IID / "segment-00000.parquet").write_bytes(coverage.parquet_bytes(rows, CITYSCAPES))
    events.write_input_events(str(out / "coverage" / IID / "*.parquet"),
                              str(out / "events" / f"{IID}.parquet"), events.EventSettings())


def write_still_run(out: Path, stills: list[tuple[str, str, float]], quality: str | None = None,
                    car_share: float = 0.0) -> None:
    """Still images' outputs, one (source uri, model, confidence) each: a coverage row, an
    overlay and the done marker whose options say the preset (`quality`, None: the default)."""
    for uri, model, confidence in stills:
        iid = naming.input_id(uri)
        ids = _label_map(0)
        cars = round(car_share * HEIGHT)
        ids[HEIGHT - cars:] = CITYSCAPES.id_of("car")
        overlay_uri = f"overlays/{iid}/000000.jpg"
        (out / "overlays" / iid).mkdir(parents=True)
        blended = render.overlay(np.full((HEIGHT, WIDTH, 3), 90, np.uint8), ids, CITYSCAPES.palette, 0.5)
        (out / overlay_uri).write_bytes(render.encode_image(blended, "jpg"))
        counts = coverage.class_counts(ids, CITYSCAPES.num_classes)
        base = {"source_uri": uri, "input_id": iid, "kind": "image", "frame_index": 0,
                "timestamp_s": 0.0, "width": WIDTH, "height": HEIGHT, "model": model,
                "label_set": "cityscapes", "label_uri": f"labels/{iid}/000000.png",
                "overlay_uri": overlay_uri, "confidence": confidence, "flicker": None}
        row = coverage.coverage_row(base, counts, CITYSCAPES, regions.region_values(
            ids, counts, CITYSCAPES, regions.RegionSettings()))
        table = out / "coverage" / iid / "segment-00000.parquet"
        table.parent.mkdir(parents=True)
        table.write_bytes(coverage.parquet_bytes([row], CITYSCAPES))
        (out / "_done").mkdir(exist_ok=True)
        (out / "_done" / f"{iid}.json").write_text(json.dumps(
            {"input_id": iid, "kind": "image", "frames": 1, "options": {"quality": quality, "model": model}}))
