"""Plan and decode: an input URI -> work units -> (key, RGB frame) streams."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator

import numpy as np

from beam_seg import naming, storage
from beam_seg.config import RunConfig
from beam_seg.media import images, video
from beam_seg.models.handler import FrameInput
from beam_seg.pipeline import temporal
from beam_seg.pipeline.records import FrameKey, UnitStatus, WorkUnit, planned_frame_indices


def plan_units(uri: str, cfg: RunConfig) -> list[WorkUnit]:
    """An input URI -> its work units (one per image, one per frame range of a video)."""
    kind = naming.kind_of(uri)
    iid = naming.input_id(uri)
    if kind not in ("image", "video"):
        raise ValueError(f"unsupported file type {naming.extension(uri) or '(none)'!r}")
    what = storage.not_a_regular_file(uri)
    if what is not None:  # a FIFO would block the read, a device never end
        raise ValueError(f"not a regular file: {what}")
    # identity first: a source replaced while this plan is made is caught at the finish
    version = json.dumps(storage.source_identity(uri), sort_keys=True)
    if kind == "image":
        return [WorkUnit(uri, iid, "image", source_version=version)]
    info = video.probe(storage.local_copy(uri))
    if info.width * info.height > cfg.max_image_pixels:
        raise images.ImageTooLargeError(
            f"video frames are {info.width}x{info.height}, over the limit of {cfg.max_image_pixels} "
            "pixels (raise it with --max-image-pixels)")
    segments = video.plan_segments(info, cfg.segment_frames)
    slim = dataclasses.replace(info, timestamps_s=())
    k, step = cfg.temporal_frames((info.width, info.height)), cfg.every_nth_frame
    return [WorkUnit(uri, iid, "video", seg, len(segments), slim,
                     context_span(info, seg, k, step) if k else None, version) for seg in segments]


def context_span(info: video.VideoInfo, seg: video.Segment, k: int, step: int) -> video.Segment:
    """The frames a unit decodes when temporal fusion takes K neighbours on each side:
    `temporal.frames_before(K)` processed frames before its range and K after, at
    --every-nth-frame spacing."""
    first_kept = -(-seg.start // step)  # in --every-nth-frame steps: the first one at or after start
    first = max(0, (first_kept - temporal.frames_before(k)) * step)
    last = min(info.frame_count, seg.stop + k * step)
    ts = info.timestamps_s
    seek = 0.0 if first == 0 else info.seek_offset_s + (ts[first - 1] + ts[first]) / 2
    preroll = min(seek, info.reorder_s) if seek > 0 else 0.0  # as plan_segments does
    return video.Segment(seg.index, first, last - first, seek, (), preroll)


def read_still(uri: str, max_pixels: int) -> np.ndarray:
    """A still's RGB pixels, read as a stream (Pillow stops at a bomb's header)."""
    with storage.open_for_read(uri) as stream:
        return images.decode_image(stream, max_pixels)


def is_key(index: int, step: int, keyframes: int) -> bool:
    """Whether a video's frame `index` is a key frame: from its place in the whole video, so
    that every work unit agrees on it whatever --segment-frames is."""
    return (index // step) % keyframes == 0


def decode_unit(unit: WorkUnit, cfg: RunConfig) -> Iterator[tuple[FrameKey, FrameInput] | UnitStatus]:
    """Yield (key, RGB frame) for each frame to process, then one UnitStatus.

    A video that stops decoding early still yields the frames it gave; the status then
    carries the error so the rest of the segment is reported, not silently dropped.
    """
    if unit.kind == "image":
        rgb = storage.within_deadline(unit.source_uri, read_still, unit.source_uri, cfg.max_image_pixels)
        yield FrameKey(unit, 0, 0.0), FrameInput("image", rgb)
        yield UnitStatus(unit, 1, 1, frames_read=1)
        return
    seg = unit.segment
    span = unit.context or seg
    wanted = set(planned_frame_indices(seg, cfg.every_nth_frame))
    keyframes = cfg.keyframe_interval((unit.info.width, unit.info.height))
    decoded = context = 0
    path = storage.local_copy(unit.source_uri)
    # closing(): ffmpeg is stopped as soon as this generator is, even if Beam abandons it
    stalled = None
    with contextlib.closing(video.decode_frames(path, unit.info, span)) as frames:
        try:
            for offset, rgb in enumerate(frames):
                index = span.start + offset
                if seg.start <= index < seg.stop:
                    decoded += 1
                    if index in wanted:
                        yield (FrameKey(unit, index, seg.timestamps_s[index - seg.start]),
                               FrameInput("video", rgb, is_key(index, cfg.every_nth_frame, keyframes)))
                elif index % cfg.every_nth_frame == 0:  # a neighbour for temporal fusion
                    context += 1
                    yield (FrameKey(unit, index, 0.0, context=True),
                           FrameInput("video", rgb, is_key(index, cfg.every_nth_frame, keyframes)))
        except video.VideoError as exc:  # a stalled decoder: the frames it gave are kept
            stalled = str(exc)
    error = missing_from = None
    if decoded < seg.count:
        missing_from = seg.start + decoded
        error = (f"decoding stopped after {decoded} of {seg.count} frames "
                 f"(frames {missing_from}..{seg.stop - 1} missing): "
                 + (stalled or "truncated or corrupt"))
    done = len([i for i in wanted if i < seg.start + decoded])
    yield UnitStatus(unit, len(wanted), done, error, missing_from, frames_read=decoded,
                     context_read=context)
