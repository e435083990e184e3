"""The work of each pipeline step as plain functions: plan, decode, write a frame, finish a
segment, finish an input. `transforms.py` only wires these into Beam, and tests call them
directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Iterator

import numpy as np

from beam_seg import naming, storage
from beam_seg.analytics import coverage
from beam_seg.labels import LabelSet
from beam_seg.media import images, render, video
from beam_seg.models.inference import FrameInput
from beam_seg.pipeline.records import (
    ErrorRecord,
    FrameKey,
    FrameRecord,
    RunConfig,
    SegmentResult,
    UnitStatus,
    WorkUnit,
    planned_frame_indices,
)

log = logging.getLogger("beam_seg")


def plan_units(uri: str, cfg: RunConfig) -> list[WorkUnit]:
    """An input URI -> its work units (one per image, one per frame range of a video)."""
    kind = naming.kind_of(uri)
    iid = naming.input_id(uri)
    if kind == "image":
        return [WorkUnit(uri, iid, "image")]
    if kind != "video":
        raise ValueError(f"unsupported file type {naming.extension(uri) or '(none)'!r}")
    info = video.probe(storage.local_copy(uri))
    if info.width * info.height > cfg.max_image_pixels:
        raise images.ImageTooLargeError(
            f"video frames are {info.width}x{info.height}, over the limit of {cfg.max_image_pixels} "
            "pixels (raise it with --max-image-pixels)")
    segments = video.plan_segments(info, cfg.segment_frames)
    slim = dataclasses.replace(info, timestamps_s=())
    return [WorkUnit(uri, iid, "video", seg, len(segments), slim) for seg in segments]


def decode_unit(unit: WorkUnit, cfg: RunConfig) -> Iterator[tuple[FrameKey, FrameInput] | UnitStatus]:
    """Yield (key, RGB frame) for each frame to process, then one UnitStatus.

    A video that stops decoding early still yields the frames it gave; the status then
    carries the error so the rest of the segment is reported, not silently dropped.
    """
    if unit.kind == "image":
        rgb = images.decode_image(storage.read_bytes(unit.source_uri), cfg.max_image_pixels)
        yield FrameKey(unit, 0, 0.0), FrameInput("image", rgb)
        yield UnitStatus(unit, 1, 1, frames_read=1)
        return
    seg = unit.segment
    wanted = set(planned_frame_indices(seg, cfg.every_nth_frame))
    decoded = 0
    path = storage.local_copy(unit.source_uri)
    # closing(): ffmpeg is stopped as soon as this generator is, even if Beam abandons it
    with contextlib.closing(video.decode_frames(path, unit.info, seg)) as frames:
        for offset, rgb in enumerate(frames):
            decoded += 1
            index = seg.start + offset
            if index in wanted:
                yield FrameKey(unit, index, seg.timestamps_s[offset]), FrameInput("video", rgb)
    error = missing_from = None
    if decoded < seg.count:
        missing_from = seg.start + decoded
        error = (f"decoding stopped after {decoded} of {seg.count} frames "
                 f"(frames {missing_from}..{seg.stop - 1} missing): truncated or corrupt")
    done = len([i for i in wanted if i < seg.start + decoded])
    yield UnitStatus(unit, len(wanted), done, error, missing_from, frames_read=decoded)


def write_frame_outputs(key: FrameKey, rgb: np.ndarray, ids: np.ndarray, cfg: RunConfig,
                        label_set: LabelSet) -> tuple[FrameRecord, np.ndarray]:
    """Write a frame's label PNG and overlay; keep its class counts, and hand back the
    overlay pixels for the segment video."""
    layout = cfg.layout
    iid = key.unit.input_id
    storage.write_bytes(layout.label_png(iid, key.frame_index), render.label_png_bytes(ids, label_set))
    blended = render.overlay(rgb, ids, label_set.palette, cfg.alpha)
    storage.write_bytes(layout.overlay(iid, key.frame_index, cfg.overlay_format),
                        render.encode_image(blended, cfg.overlay_format))
    record = FrameRecord(key.frame_index, key.timestamp_s, int(ids.shape[1]), int(ids.shape[0]),
                         coverage.class_counts(ids, label_set.num_classes))
    return record, blended


class SegmentEncoder:
    """Encodes one video segment's overlays into its mp4 as they are made.

    A segment's frames reach the write step in order, in one bundle (they come from one
    decode call in the same fused stage), so the video is encoded from the exact overlay
    pixels on the way, never re-read from storage. The mp4 appears at its URI only once
    `finish` has closed it; an encoder that fails keeps its reason in `error` and the
    segment simply has no video (its frames' other outputs are still written).
    """

    def __init__(self, unit: WorkUnit, cfg: RunConfig):
        self.unit = unit
        self.uri = cfg.layout.segment_video(unit.input_id, unit.segment.index)
        self.error: str | None = None
        self._previous = -1
        self._tmp = tempfile.TemporaryDirectory(prefix="beam_seg_seg_")
        info = unit.info
        self._writer = video.VideoWriter(os.path.join(self._tmp.name, "segment.mp4"), info.width,
                                         info.height, info.fps / cfg.every_nth_frame, info.sar)
        try:
            storage.delete(self.uri)  # an earlier run's file must not stand in for this one
            self._writer.__enter__()
        except Exception as exc:  # any failure only costs this segment its video
            self._fail(exc)

    def add(self, frame_index: int, overlay: np.ndarray) -> None:
        if self.error:
            return
        try:
            if frame_index <= self._previous:
                raise video.VideoError(f"frame {frame_index} arrived after frame {self._previous}")
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
            storage.delete(cfg.layout.segment_marker(unit.input_id, unit.segment.index))
            self.encoder = SegmentEncoder(unit, cfg)

    @property
    def last_frame(self) -> int:
        return self.planned[-1]

    def add(self, record: FrameRecord, overlay: np.ndarray) -> None:
        self.records.append(record)
        if self.encoder is not None:
            self.encoder.add(record.frame_index, overlay)

    def finish(self) -> list[ErrorRecord]:
        """Close the video, write the coverage file, then the marker (the last write)."""
        errors = []
        encode_error = self.encoder.finish() if self.encoder is not None else None
        if encode_error:
            errors.append(encode_error)
        try:
            write_coverage(self.unit, self.records, self.cfg, self.label_set, self.model_name)
        except Exception as exc:  # storage failures cost this unit its table rows, nothing else
            errors.append(ErrorRecord(self.unit.source_uri, self.unit.input_id, "write",
                                      f"coverage: {type(exc).__name__}: {exc}",
                                      self.planned[0], self.planned[-1] + 1))
        complete = [r.frame_index for r in self.records] == self.planned
        if self.unit.kind == "video" and complete and not errors:
            _write_segment_marker(self.unit, len(self.records), self.cfg)
        return errors

    def abort(self) -> None:
        if self.encoder is not None:
            self.encoder.abort()


def coverage_rows(unit: WorkUnit, records: list[FrameRecord], cfg: RunConfig,
                  label_set: LabelSet, model_name: str) -> list[dict]:
    layout = cfg.layout
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
                layout.overlay(unit.input_id, record.frame_index, cfg.overlay_format)),
        }
        rows.append(coverage.coverage_row(base, record.class_counts, label_set))
    return rows


def write_coverage(unit: WorkUnit, records: list[FrameRecord], cfg: RunConfig,
                   label_set: LabelSet, model_name: str) -> None:
    """The unit's table rows as one Parquet file (none for a unit without frames)."""
    if records:
        rows = coverage_rows(unit, sorted(records, key=lambda r: r.frame_index), cfg, label_set,
                             model_name)
        storage.write_bytes(cfg.layout.coverage(unit.input_id, unit.key[1]),
                            coverage.parquet_bytes(rows, label_set))


def finish_segment(unit: WorkUnit, frames: int, cfg: RunConfig) -> SegmentResult:
    """A unit whose frames are all written (see `UnitWriter`): find its segment video,
    which is missing only when its encoder failed (and reported why)."""
    segment_uri = None
    if unit.kind == "video" and frames:
        segment_uri = cfg.layout.segment_video(unit.input_id, unit.segment.index)
        if not storage.exists(segment_uri):
            segment_uri = None
    if unit.kind == "video":
        log.info("%s: segment %d/%d done (frames %d-%d)", unit.input_id, unit.segment.index + 1,
                 unit.segment_count, unit.segment.start, unit.segment.stop - 1)
    return SegmentResult(unit, frames, segment_uri)


def _segment_identity(unit: WorkUnit, cfg: RunConfig) -> dict:
    seg = unit.segment
    return {"fingerprint": cfg.fingerprint, "start": seg.start, "count": seg.count,
            "segments": unit.segment_count}


def _write_segment_marker(unit: WorkUnit, frames: int, cfg: RunConfig) -> None:
    marker = {**_segment_identity(unit, cfg), "frames": frames}
    storage.write_bytes(cfg.layout.segment_marker(unit.input_id, unit.segment.index),
                        json.dumps(marker, sort_keys=True).encode())


def resume_segment(unit: WorkUnit, cfg: RunConfig) -> SegmentResult | None:
    """This video segment's result from an earlier run that did not finish its input, or
    None when the segment has to be done (again).

    Reused only when the earlier run had the same options (fingerprint) and the same cut
    of the video, its marker says every planned frame was written without error, and its
    mp4 and coverage file are still there. --overwrite never reuses anything.
    """
    if cfg.overwrite or unit.kind != "video":
        return None
    layout = cfg.layout
    iid, index = unit.input_id, unit.segment.index
    marker_uri = layout.segment_marker(iid, index)
    if not storage.exists(marker_uri):
        return None
    try:
        marker = json.loads(storage.read_bytes(marker_uri))
    except ValueError:  # unreadable: redo the segment
        return None
    if any(marker.get(k) != v for k, v in _segment_identity(unit, cfg).items()):
        return None
    video_uri = layout.segment_video(iid, index)
    if not (storage.exists(video_uri) and storage.exists(layout.coverage(iid, index))):
        return None
    return SegmentResult(unit, int(marker["frames"]), video_uri)


def status_errors(status: UnitStatus) -> list[ErrorRecord]:
    if status.error is None:
        return []
    seg = status.unit.segment
    return [ErrorRecord(status.unit.source_uri, status.unit.input_id, "decode", status.error,
                        status.missing_from, seg.stop if seg else None)]


def finish_input(input_id: str, results: list[SegmentResult], errors: list[ErrorRecord],
                 cfg: RunConfig) -> dict:
    """Join a video's segments (with the source audio), then record the input as done.

    Errors go to `errors/<id>.jsonl`; the done marker is written only for an input with
    no errors, so a re-run skips finished inputs and retries failed ones.
    """
    layout = cfg.layout
    results = sorted(results, key=lambda r: r.unit.key)
    source = results[0].unit.source_uri if results else (errors[0].source_uri if errors else "")
    kind = results[0].unit.kind if results else naming.kind_of(source)
    errors = list(errors)
    frames = sum(r.frames for r in results)
    video_uri = None
    if kind == "video" and results:
        expected = results[0].unit.segment_count
        present = [r for r in results if r.segment_video]
        if len({r.unit.segment.index for r in results}) < expected:
            errors.append(ErrorRecord(source, input_id, "assemble",
                                      f"only {len(results)} of {expected} segments finished"))
        if present:
            video_uri = layout.video(input_id)
            try:
                _assemble_video(present, video_uri, results[0].unit)
            except (video.VideoError, OSError) as exc:
                errors.append(ErrorRecord(source, input_id, "assemble", f"{type(exc).__name__}: {exc}"))
                video_uri = None
    _remove_stale_coverage(layout, input_id, {r.unit.key[1] for r in results if r.frames})
    error_uri = storage.join(layout.root, "errors", input_id + ".jsonl")
    if errors:
        # arrival order varies run to run: sort by where in the input, then by step
        errors.sort(key=lambda e: (e.frame_start is not None, e.frame_start or 0, e.step, e.reason))
        storage.write_bytes(error_uri, "".join(e.to_json() + "\n" for e in errors).encode())
        storage.delete(layout.done_marker(input_id))  # a redone input that now fails is not done
    else:
        storage.delete(error_uri)  # a clean re-run leaves no stale error record behind
    summary = {"source_uri": source, "input_id": input_id, "kind": kind, "frames": frames,
               "errors": len(errors), "video": layout.relative(video_uri) if video_uri else None}
    if not errors:
        storage.write_bytes(layout.done_marker(input_id),
                            json.dumps(summary, sort_keys=True).encode())
        if kind == "video":
            storage.delete_tree(layout.segment_video_dir(input_id))
    log.info("finished %s: %d frames, %d errors", source, frames, len(errors))
    return summary


def _remove_stale_coverage(layout: naming.OutputLayout, input_id: str, written: set[int]) -> None:
    """Drop coverage files an earlier run of this input wrote and this one did not (e.g. a
    re-run with other --segment-frames), so no frame is counted twice by SQL over the table."""
    for uri in storage.list_files(layout.coverage_files(input_id)):
        index = uri.rsplit("segment-", 1)[-1].split(".")[0]
        if not index.isdigit() or int(index) not in written:
            storage.delete(uri)


def _assemble_video(results: list[SegmentResult], video_uri: str, unit: WorkUnit) -> None:
    with tempfile.TemporaryDirectory(prefix="beam_seg_join_") as tmp:
        locals_ = []
        for r in results:
            local = os.path.join(tmp, f"{r.unit.segment.index:05d}.mp4")
            storage.download_file(r.segment_video, local)
            locals_.append(local)
        out = os.path.join(tmp, "video.mp4")
        audio = storage.local_copy(unit.source_uri) if unit.info.has_audio else None
        video.concat_segments(locals_, out, audio, unit.info.audio_codec)
        storage.upload_file(out, video_uri)
