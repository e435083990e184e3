"""Finish step: everything known about one input after the fused stage (each unit's decode
status, each unit's written result, every error record) -> its video, its error records and,
only when all is well, its done marker."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field

from beam_seg import naming, storage
from beam_seg.config import RunConfig
from beam_seg.media import video
from beam_seg.naming import OutputLayout
from beam_seg.pipeline import markers
from beam_seg.pipeline.error_records import first_cause
from beam_seg.pipeline.records import ErrorRecord, UnitStatus, UnitWritten, WorkUnit
from beam_seg.tables import events
from beam_seg.tables.events import EventSettings

log = logging.getLogger("beam_seg")


@dataclass
class InputState:
    """One input's units and errors, as the grouping step hands them over."""

    input_id: str
    statuses: list[UnitStatus]
    written: list[UnitWritten]
    errors: list[ErrorRecord] = field(default_factory=list)

    @property
    def unit(self) -> WorkUnit | None:
        """Any of the input's units (they share the source and, for videos, its info)."""
        for item in (*self.written, *self.statuses):
            return item.unit
        return None

    @property
    def source_uri(self) -> str:
        unit = self.unit
        return unit.source_uri if unit else (self.errors[0].source_uri if self.errors else "")

    @property
    def kind(self) -> str:
        unit = self.unit
        return unit.kind if unit else naming.kind_of(self.source_uri)

    @property
    def frames(self) -> int:
        return sum(w.frames for w in self.written)


def status_errors(status: UnitStatus) -> list[ErrorRecord]:
    """A unit whose decoding stopped early: the frames it never gave."""
    if status.error is None:
        return []
    seg = status.unit.segment
    return [ErrorRecord(status.unit.source_uri, status.unit.input_id, "decode", status.error,
                        status.missing_from, seg.stop if seg else None)]


def unit_errors(state: InputState) -> list[ErrorRecord]:
    """Errors that only show when a unit's decode status meets its write result: frames that
    were decoded but have no outputs, and units that never finished at all."""
    errors: list[ErrorRecord] = []
    written = {w.unit.key: w for w in state.written}
    for status in state.statuses:
        errors += status_errors(status)
        frames = written[status.unit.key].frames if status.unit.key in written else 0
        if status.error is None and frames < status.decoded:
            missing = status.decoded - frames
            seg = status.unit.segment
            errors.append(ErrorRecord(state.source_uri, state.input_id, "write",
                                      f"{missing} of {status.decoded} frames have no outputs",
                                      seg.start if seg else 0, seg.stop if seg else 1))
    unit = state.unit
    if unit is not None and unit.kind == "video":
        finished = {w.unit.segment.index for w in state.written}
        if len(finished) < unit.segment_count:
            errors.append(ErrorRecord(state.source_uri, state.input_id, "assemble",
                                      f"only {len(finished)} of {unit.segment_count} segments finished"))
    return errors


def missing_segment_videos(state: InputState, errors: list[ErrorRecord]) -> list[ErrorRecord]:
    """A segment with frames but no mp4 must have said why (its encoder's error record);
    one that did not lost its file to something else (another run, a hand), and the input
    cannot be complete."""
    if state.kind != "video":
        return []
    explained = {e.frame_start for e in errors if e.step == "encode"}
    return [ErrorRecord(state.source_uri, state.input_id, "assemble",
                        f"segment {w.unit.segment.index} (frames {w.unit.segment.start}.."
                        f"{w.unit.segment.stop - 1}) has no video and no error saying why",
                        w.unit.segment.start, w.unit.segment.stop)
            for w in state.written
            if w.frames and not w.segment_video and w.unit.segment.start not in explained]


def input_frame_indices(unit: WorkUnit, every_nth_frame: int) -> list[int]:
    """Every frame index the input's table and video must hold."""
    if unit.kind != "video":
        return [0]
    return list(range(0, unit.info.frame_count, every_nth_frame))


def assemble_video(state: InputState, layout: OutputLayout,
                   every_nth_frame: int) -> tuple[str | None, list[ErrorRecord]]:
    """Join the video's segment mp4s (with the source's audio) into videos/<id>.mp4."""
    parts = sorted((w for w in state.written if w.segment_video), key=lambda w: w.unit.key)
    if state.kind != "video" or not parts:
        return None, []
    video_uri = layout.video(state.input_id)
    try:
        frames = _concat(parts, video_uri, parts[0].unit)
    except (video.VideoError, OSError) as exc:
        return None, [ErrorRecord(state.source_uri, state.input_id, "assemble",
                                  f"{type(exc).__name__}: {exc}")]
    expected = len(input_frame_indices(parts[0].unit, every_nth_frame))
    if frames != expected:
        return video_uri, [ErrorRecord(state.source_uri, state.input_id, "verify",
                                       f"the assembled video has {frames} frames, the plan "
                                       f"{expected}")]
    return video_uri, []


def check_coverage(state: InputState, layout: OutputLayout, every_nth_frame: int) -> list[ErrorRecord]:
    """The input's table rows are exactly its planned frames: none missing, none twice."""
    import pyarrow.parquet as pq

    indices: list[int] = []
    for uri in storage.list_files(layout.coverage_files(state.input_id)):
        with storage.open_for_read(uri) as f:
            indices += pq.read_table(f, columns=["frame_index"]).column(0).to_pylist()
    expected = input_frame_indices(state.unit, every_nth_frame)
    if sorted(indices) == expected:
        return []
    missing = sorted(set(expected) - set(indices))
    extra = len(indices) - len(set(indices)) + len(set(indices) - set(expected))
    return [ErrorRecord(state.source_uri, state.input_id, "verify",
                        f"the coverage table has {len(indices)} rows for {len(expected)} planned "
                        f"frames ({len(missing)} missing, {extra} duplicate or unplanned)")]


def check_source(state: InputState) -> list[ErrorRecord]:
    """The source is still the file the plan read (it was not replaced during the run)."""
    unit = state.unit
    if unit is None or not unit.source_version:
        return []
    if storage.source_identity(unit.source_uri) == unit.source:
        return []
    return [ErrorRecord(state.source_uri, state.input_id, "verify",
                        "the source changed while it was being processed; a re-run redoes it")]


def _concat(parts: list[UnitWritten], video_uri: str, unit: WorkUnit) -> int:
    with storage.ScratchDir("beam_seg_join_") as tmp:
        locals_ = []
        for part in parts:
            local = os.path.join(tmp, f"{part.unit.segment.index:05d}.mp4")
            storage.download_file(part.segment_video, local)
            locals_.append(local)
        out = os.path.join(tmp, "video.mp4")
        audio = storage.local_copy(unit.source_uri) if unit.info.has_audio else None
        video.concat_segments(locals_, out, audio, unit.info.audio_codec)
        storage.upload_file(out, video_uri)
        return video.count_frames(out)


def remove_stale_coverage(state: InputState, layout: OutputLayout) -> None:
    """Drop coverage files an earlier run of this input wrote and this one did not (e.g. a
    re-run with other --segment-frames), so no frame is counted twice by SQL over the table."""
    written = {w.unit.key[1] for w in state.written if w.frames}
    for uri in storage.list_files(layout.coverage_files(state.input_id)):
        index = uri.rsplit("segment-", 1)[-1].split(".")[0]
        if not index.isdigit() or int(index) not in written:
            storage.delete(uri)


def write_events(state: InputState, layout: OutputLayout, settings: EventSettings) -> list[ErrorRecord]:
    """events/<id>.parquet of a video, derived from its coverage table as it now stands."""
    if state.kind != "video":
        return []
    try:
        events.write_input_events(layout.coverage_files(state.input_id),
                                  layout.events(state.input_id), settings)
    except Exception as exc:  # like a coverage write: the input fails, with the reason
        return [ErrorRecord(state.source_uri, state.input_id, "events", f"{type(exc).__name__}: {exc}")]
    return []


def record_errors(state: InputState, errors: list[ErrorRecord], layout: OutputLayout) -> None:
    """errors/<id>.jsonl holds exactly this run's errors of the input (none: no file)."""
    error_uri = storage.join(layout.root, "errors", state.input_id + ".jsonl")
    if not errors:
        storage.delete(error_uri)  # a clean re-run leaves no stale error record behind
        return
    # arrival order varies run to run: sort by where in the input, then by step
    errors.sort(key=lambda e: (e.frame_start is not None, e.frame_start or 0, e.step, e.reason))
    storage.write_bytes(error_uri, "".join(e.to_json() + "\n" for e in errors).encode())
    markers.delete_done_marker(state.input_id, layout)  # a redone input that now fails is not done


def finish_input(state: InputState, cfg: RunConfig) -> dict:
    """Join a video's segments, record errors, then (only without errors) mark it done.

    The done marker vouches only for what was checked: the video's frame count and the
    table's rows against the plan, and the source against the one planned. It is written
    last, so a re-run skips finished inputs and retries failed ones; the segment files it
    no longer needs go after it. A storage failure on the way becomes an error record when
    one can still be written, else the summary's `unrecorded` says why (exit code 4).
    """
    try:
        return _finish(state, cfg)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        log.error("%s: could not finish: %s", state.input_id, reason)
        summary = _summary(state, cfg.layout, None, [ErrorRecord(state.source_uri, state.input_id,
                                                          "finish", reason)])
        try:
            record_errors(state, [*state.errors, ErrorRecord(state.source_uri, state.input_id,
                                                             "finish", reason)], cfg.layout)
        except Exception as again:
            summary["unrecorded"] = f"{type(again).__name__}: {again}"
        return summary


def finish_still(written: UnitWritten, cfg: RunConfig) -> UnitWritten:
    """A still whose outputs are all written is finished at once, in the write step, and
    marked done: a run of thousands of stills that is interrupted keeps every one it
    finished (the grouping step after it only runs once the whole stage has). A still that
    fails a check here is finished again, with everything known, by the finish step."""
    if written.unit.kind != "image" or written.frames != 1:
        return written
    summary = finish_input(InputState(written.unit.input_id, [], [written]), cfg)
    if summary["errors"] or summary.get("unrecorded"):
        return written
    return dataclasses.replace(written, finished=summary)


def finished_early(state: InputState) -> dict | None:
    """The summary of a still `finish_still` already finished, when nothing else went wrong
    for it since (no error record, no decode error): there is nothing left to do."""
    if state.kind != "image" or state.errors or len(state.written) != 1:
        return None
    if any(status.error for status in state.statuses):
        return None
    return state.written[0].finished


def _summary(state: InputState, layout: OutputLayout, video_uri: str | None,
             errors: list[ErrorRecord]) -> dict:
    return {"source_uri": state.source_uri, "input_id": state.input_id, "kind": state.kind,
            "frames": state.frames, "errors": len(errors),
            "video": layout.relative(video_uri) if video_uri else None,
            "first_error": first_cause(errors).reason if errors else None}


def forget_broken_segments(state: InputState, layout: OutputLayout) -> None:
    """A segment whose decoding stopped early keeps no marker, even when every frame the run
    wanted of it came before the break (--every-nth-frame): a re-run must decode it again
    and fail the same way, not reuse it as a clean one and call the input done."""
    for status in state.statuses:
        if status.error is not None and status.unit.kind == "video":
            markers.delete_segment_marker(status.unit, layout)


def _finish(state: InputState, cfg: RunConfig) -> dict:
    forget_broken_segments(state, cfg.layout)
    errors = list(state.errors) + unit_errors(state)
    errors += missing_segment_videos(state, errors)
    layout = cfg.layout
    video_uri, assemble_errors = assemble_video(state, layout, cfg.every_nth_frame)
    errors += assemble_errors
    remove_stale_coverage(state, layout)
    if not errors and state.unit is not None:
        errors += check_coverage(state, layout, cfg.every_nth_frame) + check_source(state)
    errors += write_events(state, layout, cfg.event_settings)
    record_errors(state, errors, layout)
    summary = _summary(state, layout, video_uri, errors)
    if not errors:
        markers.write_done_marker(state.input_id, summary, layout, cfg.fingerprint,
                                  cfg.output_options(), state.unit.source)
        if state.kind == "video":
            storage.delete_tree(layout.segment_video_dir(state.input_id))
    log.debug("finished %s: %d frames, %d errors", state.source_uri, state.frames, len(errors))
    return summary
