"""The pipeline, wired from the steps' plain functions (decode, write, finish, markers).

    uris -> Plan -> Reshuffle -> Decode -> RunInference -> WriteFrames (+ unit files)
         -> (one group by input: unit statuses, units written, errors) -> FinishInputs
    every step's failures -> ErrorRecords -> joined into FinishInputs -> errors/<id>.jsonl

Pixels stay inside the fused Decode -> RunInference -> WriteFrames stage; what crosses the
one shuffle after it is a status and a result per unit, and error records.
"""

from __future__ import annotations

import time
import warnings

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.transforms.window import GlobalWindows

from beam_seg import scores, storage
from beam_seg.config import RunConfig
from beam_seg.models import load_label_set, resolve
from beam_seg.models.handler import DeepLabModelHandler
from beam_seg.pipeline import decode, finish, markers, temporal, write
from beam_seg.pipeline.progress import ProgressCounter
from beam_seg.pipeline.records import (
    ErrorRecord,
    UnitStatus,
    WorkUnit,
    error_from_exception,
    planned_frame_indices,
)

NAMESPACE = "beam_seg"

# BatchElements fits batch size against time and warns when its few points are collinear.
warnings.filterwarnings("ignore", category=np.exceptions.RankWarning, module=r"apache_beam\.transforms\.util")


class _RunDoFn(beam.DoFn):
    """Base of the run's steps: each holds the run's options, and sets the storage deadline
    in its own worker process (the one place it is set on a worker)."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg

    def setup(self) -> None:
        storage.set_deadline(self.cfg.storage_deadline)


class _LabelSetDoFn(_RunDoFn):
    """Base for steps that need the run's label set (resolved once per DoFn instance)."""

    def setup(self) -> None:
        super().setup()
        resolved = resolve(self.cfg.model, self.cfg.labels)
        self.model_name = resolved.name
        self.label_set = load_label_set(resolved.labels)


def last_decoded_frame(unit: WorkUnit, every_nth_frame: int) -> int:
    """The last frame a unit's decoder yields (its last context frame under temporal fusion)."""
    span = unit.context or unit.segment
    return max(i for i in range(span.start, span.stop) if i % every_nth_frame == 0)


def unit_frame_count(unit: WorkUnit, every_nth_frame: int) -> int:
    """The frames a unit writes (its own, not its temporal-fusion context)."""
    return len(planned_frame_indices(unit.segment, every_nth_frame)) if unit.segment else 1


class PlanUnits(_RunDoFn):
    """Input URI -> its work units; their frames count as planned in the live progress."""

    def setup(self) -> None:
        super().setup()
        self.progress = ProgressCounter(self.cfg.progress_dir)

    def process(self, uri):
        units = decode.plan_units(uri, self.cfg)
        self.progress.add("planned", sum(unit_frame_count(u, self.cfg.every_nth_frame) for u in units))
        yield from units

    def finish_bundle(self):
        self.progress.flush()


class DecodeUnit(_RunDoFn):
    """Work unit -> (FrameKey, RGB frame) stream, plus a UnitStatus on the 'status' output;
    a segment that an unfinished earlier run completed goes to 'resumed' instead."""

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        self.frames_decoded = Metrics.counter(NAMESPACE, "frames_decoded")
        self.frames_context = Metrics.counter(NAMESPACE, "frames_context")
        self.segments_resumed = Metrics.counter(NAMESPACE, "segments_resumed")

    def setup(self) -> None:
        super().setup()
        self.progress = ProgressCounter(self.cfg.progress_dir)

    def process(self, unit):
        resumed = None if self.cfg.overwrite else markers.resume_segment(
            unit, self.cfg.layout, self.cfg.fingerprint)
        if resumed is not None:
            self.segments_resumed.inc()
            self.progress.add("written", unit_frame_count(unit, self.cfg.every_nth_frame))
            yield beam.pvalue.TaggedOutput("resumed", resumed)
            return
        for item in decode.decode_unit(unit, self.cfg):
            if isinstance(item, UnitStatus):
                self.frames_decoded.inc(item.frames_read)
                self.frames_context.inc(item.context_read)
                yield beam.pvalue.TaggedOutput("status", item)
            else:
                yield item


class WriteFrame(_LabelSetDoFn):
    """(FrameKey, PredictionResult) -> label PNG + overlay written, the overlay fed to its
    segment's video encoder; at a unit's last frame its video, coverage file and marker
    (see `write.UnitWriter`), and one UnitWritten out. Failures of a unit's files on 'errors'."""

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        self.frames_segmented = Metrics.counter(NAMESPACE, "frames_segmented")
        self.write_ms = Metrics.distribution(NAMESPACE, "frame_write_ms")
        self.temporal = cfg.temporal_frames()
        self._writers: dict = {}
        self._fusers: dict = {}

    def setup(self) -> None:
        super().setup()
        self.progress = ProgressCounter(self.cfg.progress_dir)

    def start_bundle(self):
        self._abort_writers()  # left open by a bundle that failed

    def process(self, element):
        key, result = element
        for frame in self._ready(key, result.example.rgb, result.inference, result.example.full):
            yield from self._write(frame)

    def _ready(self, key, rgb, seg, full: bool = True) -> list:
        """The frames ready to write: at once without temporal fusion, else once their later
        neighbours have come through the unit's fuser (context frames are never written)."""
        unit = key.unit
        if seg.scores is None or unit.kind != "video" or self.temporal == 0:
            if key.context:
                return []
            confidence = scores.confidence(seg.scores) if seg.scores is not None else None
            return [temporal.FusedFrame(key, rgb, seg.with_labels(rgb.shape[1], rgb.shape[0]).labels,
                                        confidence, None)]
        fuser = self._fusers.get(unit.key)
        if fuser is None:
            k = self.cfg.temporal_frames((unit.info.width, unit.info.height))
            fuser = self._fusers[unit.key] = temporal.TemporalFuser(
                k, temporal.protected_ids(self.label_set.names))
        ready = fuser.add(key, rgb, seg, full)
        if key.frame_index == last_decoded_frame(unit, self.cfg.every_nth_frame):
            ready += self._fusers.pop(unit.key).flush()
        return ready

    def _write(self, frame):
        key = frame.key
        start = time.perf_counter()
        record, overlay = write.write_frame_outputs(key, frame.rgb, frame.labels, self.cfg,
                                                    self.label_set, frame.confidence, frame.flicker)
        unit = key.unit
        writer = self._writers.get(unit.key)
        if writer is None:
            writer = self._writers[unit.key] = write.UnitWriter(unit, self.cfg, self.label_set,
                                                                self.model_name)
        writer.add(record, overlay)
        self.write_ms.update(int((time.perf_counter() - start) * 1000))
        self.frames_segmented.inc()
        self.progress.add("written")
        if key.frame_index == writer.last_frame:
            written, errors = self._writers.pop(unit.key).finish()
            for error in errors:
                yield beam.pvalue.TaggedOutput("errors", error)
            yield finish.finish_still(written, self.cfg) if not errors else written

    def finish_bundle(self):
        """Units whose last frame never came (truncated video, failed frames) end here."""
        fusers, self._fusers = self._fusers, {}
        for fuser in fusers.values():
            for frame in fuser.flush():
                for out in self._write(frame):
                    if isinstance(out, beam.pvalue.TaggedOutput):
                        yield beam.pvalue.TaggedOutput(out.tag, GlobalWindows.windowed_value(out.value))
                    else:
                        yield GlobalWindows.windowed_value(out)
        self.progress.flush()
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            written, errors = writer.finish()
            for error in errors:
                yield beam.pvalue.TaggedOutput("errors", GlobalWindows.windowed_value(error))
            yield GlobalWindows.windowed_value(written)

    def teardown(self):
        self._abort_writers()

    def _abort_writers(self):
        self._fusers = {}
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            writer.abort()


class FinishInput(_RunDoFn):
    """One input's units and errors, grouped -> its video, error records and done marker."""

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        self.inputs_done = Metrics.counter(NAMESPACE, "inputs_succeeded")
        self.inputs_failed = Metrics.counter(NAMESPACE, "inputs_failed")
        self.inputs_unrecorded = Metrics.counter(NAMESPACE, "inputs_unrecorded")

    def process(self, element):
        input_id, grouped = element
        state = finish.InputState(input_id, list(grouped["status"]), list(grouped["written"]),
                                  list(grouped["errors"]))
        summary = finish.finished_early(state) or finish.finish_input(state, self.cfg)
        (self.inputs_failed if summary["errors"] else self.inputs_done).inc()
        if summary.get("unrecorded"):
            self.inputs_unrecorded.inc()  # not even its error records could be written
        yield summary


def _dead_letters(step: str):
    """Map a with_exception_handling bad output `(element, exc_info)` to ErrorRecords."""
    def convert(bad):
        element, exc_info = bad
        return error_from_exception(step, element, exc_info)
    return beam.Map(convert)


def _inference_dead_letters(bad):
    """RunInference's failed batch -> one record per frame; Beam hands over either the
    exception or its `(type, value, traceback)` tuple, depending on the version."""
    batch, exc = bad
    info = exc if isinstance(exc, tuple) and len(exc) == 3 else (type(exc), exc, [])
    return [error_from_exception("inference", item, info) for item in batch]


class CountErrors(beam.DoFn):
    def __init__(self):
        self.errors = Metrics.counter(NAMESPACE, "error_records")

    def process(self, error: ErrorRecord):
        self.errors.inc()
        yield error.input_id, error


def _by_input(record) -> tuple[str, object]:
    return record.unit.input_id, record


class SegmentInputs(beam.PTransform):
    """Input URIs -> per-input summaries, with every output written under cfg.output.

    The whole `beam-seg segment` job as one composite transform: plan each input into work
    units, decode, infer, write each frame's label PNG, overlay and table row, encode the
    segmented videos and finish each input (events, error records, done marker). Failures
    of any step become error records under `cfg.output`, never a failed pipeline.

    Args:
        cfg: the run's options (`RunConfig(output=...)`; every `beam-seg segment` flag).
        handler: the model handler that makes the label maps, normally
            `DeepLabModelHandler(cfg.model, cfg.labels, settings=cfg.inference_settings(),
            temporal=cfg.temporal_frames())`.

    Returns:
        A PCollection of one dict per input: `source_uri`, `input_id`, `frames`, `errors` …

    Example:
        >>> cfg = RunConfig(output="out", quality="fast")
        >>> handler = DeepLabModelHandler(cfg.model, cfg.labels, settings=cfg.inference_settings())
        >>> with beam.Pipeline() as p:                              # doctest: +SKIP
        ...     _ = p | beam.Create(["clip.mp4"]) | SegmentInputs(cfg, handler)
    """

    def __init__(self, cfg: RunConfig, handler: DeepLabModelHandler):
        super().__init__()
        self.cfg = cfg
        self.handler = handler

    def expand(self, uris):
        cfg = self.cfg
        planned, plan_failed = (
            uris | "Plan" >> beam.ParDo(PlanUnits(cfg)).with_exception_handling())
        units = planned | "SpreadUnits" >> beam.Reshuffle()
        decoded = units | "Decode" >> beam.ParDo(DecodeUnit(cfg)).with_outputs(
            "status", "resumed", main="frames").with_exception_handling(partial=True)
        inferred, inference_failed = decoded["frames"] | "Segment" >> RunInference(
            KeyedModelHandler(self.handler)).with_exception_handling()
        written = inferred | "WriteFrames" >> beam.ParDo(WriteFrame(cfg)).with_outputs(
            "errors", main="written").with_exception_handling()
        errors = (
            (plan_failed | "PlanErrors" >> _dead_letters("plan"),
             decoded["bad"] | "DecodeErrors" >> _dead_letters("decode"),
             inference_failed.failed_inferences
             | "InferenceErrors" >> beam.FlatMap(_inference_dead_letters),
             written["bad"] | "WriteErrors" >> _dead_letters("write"),
             written["errors"])
            | "AllErrors" >> beam.Flatten()
            | "CountErrors" >> beam.ParDo(CountErrors()))
        units_written = (
            (written["written"], decoded["resumed"]) | "AllWritten" >> beam.Flatten()
            | "KeyWritten" >> beam.Map(_by_input))
        return (
            {"status": decoded["status"] | "KeyStatus" >> beam.Map(_by_input),
             "written": units_written,
             "errors": errors}
            | "GroupByInput" >> beam.CoGroupByKey()
            | "FinishInputs" >> beam.ParDo(FinishInput(cfg)))
