"""Write step: a frame's label PNG and overlay, and at a unit's last frame its segment
video, coverage file and marker, all inside the fused decode -> inference -> write stage."""

from __future__ import annotations

import logging
import os

import numpy as np

from beam_seg import storage
from beam_seg.config import RunConfig
from beam_seg.labels import LabelSet
from beam_seg.media import render, video
from beam_seg.naming import OutputLayout
from beam_seg.pipeline import markers
from beam_seg.pipeline.records import (
    ErrorRecord,
    FrameKey,
    FrameRecord,
    UnitWritten,
    WorkUnit,
    planned_frame_indices,
)
from beam_seg.tables import coverage, regions

log = logging.getLogger("beam_seg")


def write_frame_outputs(key: FrameKey, rgb: np.ndarray, ids: np.ndarray, cfg: RunConfig,
                        label_set: LabelSet, confidence: float | None = None,
                        flicker: float | None = None) -> tuple[FrameRecord, np.ndarray]:
    """Write a frame's label PNG and overlay; keep its class counts, and hand back the
    overlay pixels for the segment video."""
    layout = cfg.layout
    iid = key.unit.input_id
    storage.write_bytes(layout.label_png(iid, key.frame_index), render.label_png_bytes(ids, label_set))
    blended = render.overlay(rgb, ids, label_set.palette, cfg.alpha)
    counts = coverage.class_counts(ids, label_set.num_classes)
    picture = blended
    if cfg.legend == "all":  # a copy: the segment video draws its own, steadier legend
        picture = render.draw_legend(blended.copy(), render.legend_classes(
            counts, label_set.num_classes), label_set.names, label_set.palette)
    storage.write_bytes(layout.overlay(iid, key.frame_index, cfg.overlay_format),
                        render.encode_image(picture, cfg.overlay_format))
    record = FrameRecord(key.frame_index, key.timestamp_s, int(ids.shape[1]), int(ids.shape[0]),
                         counts, regions.region_values(ids, counts, label_set, cfg.region_settings),
                         confidence, flicker)
    return record, blended


class SegmentEncoder:
    """Encodes one video segment's overlays into its mp4 as they are made.

    A segment's frames reach the write step in order, in one bundle (they come from one
    decode call in the same fused stage), so the video is encoded from the exact overlay
    pixels on the way, never re-read from storage. The mp4 appears at its URI only once
    `finish` has closed it; an encoder that fails keeps its reason in `error` and the
    segment simply has no video (its frames' other outputs are still written).
    """

    def __init__(self, unit: WorkUnit, cfg: RunConfig, label_set: LabelSet):
        self.unit = unit
        self.uri = cfg.layout.segment_video(unit.input_id, unit.segment.index)
        self.error: str | None = None
        self._previous = -1
        self._tmp = storage.ScratchDir("beam_seg_seg_")
        info = unit.info
        fps = info.fps / cfg.every_nth_frame
        self._label_set = label_set
        self._legend = (None if cfg.legend == "none" else render.LegendTracker(
            label_set.num_classes, round(float(fps) * render.LEGEND_HOLD_S)))
        self._writer = video.VideoWriter(os.path.join(self._tmp.name, "segment.mp4"), info.width,
                                         info.height, fps, info.sar)
        try:
            storage.delete(self.uri)  # an earlier run's file must not stand in for this one
            self._writer.__enter__()
        except Exception as exc:  # any failure only costs this segment its video
            self._fail(exc)

    def add(self, frame_index: int, overlay: np.ndarray, class_counts: np.ndarray) -> None:
        """Encode one overlay (drawing the legend on it, in place: its file is written)."""
        if self.error:
            return
        try:
            if frame_index <= self._previous:
                raise video.VideoError(f"frame {frame_index} arrived after frame {self._previous}")
            if self._legend is not None:
                render.draw_legend(overlay, self._legend.update(class_counts), self._label_set.names,
                                   self._label_set.palette)
            self._writer.write(overlay)
            self._previous = frame_index
        except Exception as exc:
            self._fail(exc)

    def finish(self) -> ErrorRecord | None:
        """Close the encoder and upload the segment; after a failure, clean up and return
        the error record for the segment's frames."""
        if not self.error:
            try:
                self._writer.__exit__(None, None, None)
                storage.upload_file(self._writer.path, self.uri)
            except Exception as exc:
                self._fail(exc)
        self._tmp.cleanup()
        if self.error is None:
            return None
        seg = self.unit.segment
        return ErrorRecord(self.unit.source_uri, self.unit.input_id, "encode", self.error,
                           seg.start, seg.stop)

    def abort(self) -> None:
        self._writer.abort()
        self._tmp.cleanup()

    def _fail(self, exc: Exception) -> None:
        self.error = f"segment video: {type(exc).__name__}: {exc}"
        log.warning("%s: %s", self.unit.input_id, self.error)
        self._writer.abort()


class UnitWriter:
    """What one unit's frames leave behind once they are all written: the segment video,
    the coverage file and, for a clean video segment, the marker a re-run reuses it by.

    It lives in the write step, in the same fused stage as decoding, so a unit is complete
    on storage as soon as its last planned frame is written (or, for a cut video, at the
    end of the bundle), not only after the shuffle that follows the whole stage: a killed
    run keeps every segment it finished.
    """

    def __init__(self, unit: WorkUnit, cfg: RunConfig, label_set: LabelSet, model_name: str):
        self.unit, self.cfg, self.label_set, self.model_name = unit, cfg, label_set, model_name
        self.planned = planned_frame_indices(unit.segment, cfg.every_nth_frame) if unit.segment else [0]
        self.records: list[FrameRecord] = []
        self.encoder = None
        if unit.kind == "video":
            # an earlier run's marker must not vouch for what this run writes
            markers.delete_segment_marker(unit, cfg.layout)
            self.encoder = SegmentEncoder(unit, cfg, label_set)

    @property
    def last_frame(self) -> int:
        return self.planned[-1]

    def add(self, record: FrameRecord, overlay: np.ndarray) -> None:
        self.records.append(record)
        if self.encoder is not None:
            self.encoder.add(record.frame_index, overlay, record.class_counts)

    def finish(self) -> tuple[UnitWritten, list[ErrorRecord]]:
        """Close the video, write the coverage file, then the marker (the last write)."""
        errors = []
        encode_error = self.encoder.finish() if self.encoder is not None else None
        if encode_error:
            errors.append(encode_error)
        try:
            write_coverage(self.unit, self.records, self.cfg.layout, self.cfg.overlay_format,
                               self.label_set, self.model_name)
        except Exception as exc:  # storage failures cost this unit its table rows, nothing else
            errors.append(ErrorRecord(self.unit.source_uri, self.unit.input_id, "write",
                                      f"coverage: {type(exc).__name__}: {exc}",
                                      self.planned[0], self.planned[-1] + 1))
        complete = [r.frame_index for r in self.records] == self.planned
        segment_video = None
        if self.unit.kind == "video":
            segment_video = self.encoder.uri if encode_error is None and self.records else None
            if complete and not errors:
                markers.write_segment_marker(self.unit, len(self.records), self.cfg.layout,
                                             self.cfg.fingerprint)
            seg = self.unit.segment
            log.debug("%s: segment %d/%d written (frames %d-%d)", self.unit.input_id, seg.index + 1,
                     self.unit.segment_count, seg.start, seg.stop - 1)
        return UnitWritten(self.unit, len(self.records), segment_video), errors

    def abort(self) -> None:
        if self.encoder is not None:
            self.encoder.abort()


def coverage_rows(unit: WorkUnit, records: list[FrameRecord], layout: OutputLayout,
                  overlay_format: str, label_set: LabelSet, model_name: str) -> list[dict]:
    rows = []
    for record in records:
        base = {
            "source_uri": unit.source_uri,
            "input_id": unit.input_id,
            "kind": unit.kind,
            "frame_index": record.frame_index,
            "timestamp_s": record.timestamp_s,
            "width": record.width,
            "height": record.height,
            "model": model_name,
            "label_set": label_set.name,
            "label_uri": layout.relative(layout.label_png(unit.input_id, record.frame_index)),
            "overlay_uri": layout.relative(
                layout.overlay(unit.input_id, record.frame_index, overlay_format)),
            "confidence": record.confidence,
            "flicker": record.flicker,
        }
        rows.append(coverage.coverage_row(base, record.class_counts, label_set, record.regions))
    return rows


def write_coverage(unit: WorkUnit, records: list[FrameRecord], layout: OutputLayout,
                   overlay_format: str, label_set: LabelSet, model_name: str) -> None:
    """The unit's table rows as one Parquet file (none for a unit without frames)."""
    if records:
        rows = coverage_rows(unit, sorted(records, key=lambda r: r.frame_index), layout,
                             overlay_format, label_set, model_name)
        storage.write_bytes(layout.coverage(unit.input_id, unit.key[1]),
                            coverage.parquet_bytes(rows, label_set))
