"""The pipeline as composite PTransforms, one per step of the data flow (see DESIGN.md).

    uris -> Plan -> Reshuffle -> Decode -> RunInference -> WriteFrames
         -> (group by segment) FinishSegments -> (group by input) FinishInputs
    every step's failures -> ErrorRecords -> joined into FinishInputs -> errors/<id>.jsonl

Pixels stay inside the fused Decode -> RunInference -> WriteFrames stage; only paths,
counts and table rows cross a shuffle.
"""

from __future__ import annotations

import time
import warnings

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.transforms.window import GlobalWindows

from beam_seg.models import load_label_set, resolve
from beam_seg.models.inference import DeepLabModelHandler
from beam_seg.pipeline import steps
from beam_seg.pipeline.records import ErrorRecord, RunConfig, UnitStatus, error_from_exception

NAMESPACE = "beam_seg"

# BatchElements fits batch size against time and warns when its few points are collinear.
warnings.filterwarnings("ignore", category=np.exceptions.RankWarning, module=r"apache_beam\.transforms\.util")


class _LabelSetDoFn(beam.DoFn):
    """Base for steps that need the run's label set (resolved once per DoFn instance)."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg

    def setup(self) -> None:
        resolved = resolve(self.cfg.model, self.cfg.labels)
        self.model_name = resolved.name
        self.label_set = load_label_set(resolved.labels)


class DecodeUnit(beam.DoFn):
    """Work unit -> (FrameKey, RGB frame) stream, plus a UnitStatus on the 'status' output;
    a segment that an unfinished earlier run completed goes to 'resumed' instead."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.frames_decoded = Metrics.counter(NAMESPACE, "frames_decoded")
        self.segments_resumed = Metrics.counter(NAMESPACE, "segments_resumed")

    def process(self, unit):
        resumed = steps.resume_segment(unit, self.cfg)
        if resumed is not None:
            self.segments_resumed.inc()
            yield beam.pvalue.TaggedOutput("resumed", resumed)
            return
        for item in steps.decode_unit(unit, self.cfg):
            if isinstance(item, UnitStatus):
                self.frames_decoded.inc(item.frames_read)
                yield beam.pvalue.TaggedOutput("status", item)
            else:
                yield item


class WriteFrame(_LabelSetDoFn):
    """(FrameKey, PredictionResult) -> label PNG + overlay written, the overlay fed to its
    segment's video encoder; at a unit's last frame its video, coverage file and marker
    (see `steps.UnitWriter`). FrameRecord out; failures of a unit's files on 'errors'."""

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        self.frames_segmented = Metrics.counter(NAMESPACE, "frames_segmented")
        self.write_ms = Metrics.distribution(NAMESPACE, "frame_write_ms")
        self._writers: dict = {}

    def start_bundle(self):
        self._abort_writers()  # left open by a bundle that failed

    def process(self, element):
        key, result = element
        start = time.perf_counter()
        record, overlay = steps.write_frame_outputs(key, result.example.rgb, result.inference,
                                                    self.cfg, self.label_set)
        unit = key.unit
        writer = self._writers.get(unit.key)
        if writer is None:
            writer = self._writers[unit.key] = steps.UnitWriter(unit, self.cfg, self.label_set,
                                                                self.model_name)
        writer.add(record, overlay)
        if key.frame_index == writer.last_frame:
            for error in self._writers.pop(unit.key).finish():
                yield beam.pvalue.TaggedOutput("errors", error)
        self.write_ms.update(int((time.perf_counter() - start) * 1000))
        self.frames_segmented.inc()
        yield unit.key, record

    def finish_bundle(self):
        """Units whose last frame never came (truncated video, failed frames) end here."""
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            for error in writer.finish():
                yield beam.pvalue.TaggedOutput("errors", GlobalWindows.windowed_value(error))

    def teardown(self):
        self._abort_writers()

    def _abort_writers(self):
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            writer.abort()


class FinishSegment(beam.DoFn):
    """All frame records of a unit (+ its decode status) -> its SegmentResult, and error
    records for frames that were not decoded or not written."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg

    def process(self, element):
        _, grouped = element
        statuses = list(grouped["status"])
        frames = len(list(grouped["frames"]))
        if not statuses:
            return
        status = statuses[0]
        yield status.unit.input_id, steps.finish_segment(status.unit, frames, self.cfg)
        for error in steps.status_errors(status):
            yield beam.pvalue.TaggedOutput("errors", error)
        if status.error is None and frames < status.decoded:
            yield beam.pvalue.TaggedOutput("errors", ErrorRecord(
                status.unit.source_uri, status.unit.input_id, "write",
                f"{status.decoded - frames} of {status.decoded} frames have no outputs"))


class FinishInput(beam.DoFn):
    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.inputs_done = Metrics.counter(NAMESPACE, "inputs_succeeded")
        self.inputs_failed = Metrics.counter(NAMESPACE, "inputs_failed")

    def process(self, element):
        input_id, grouped = element
        summary = steps.finish_input(input_id, list(grouped["segments"]), list(grouped["errors"]),
                                     self.cfg)
        (self.inputs_failed if summary["errors"] else self.inputs_done).inc()
        yield summary


def _dead_letters(step: str):
    """Map a with_exception_handling bad output `(element, exc_info)` to ErrorRecords."""
    def convert(bad):
        element, exc_info = bad
        return error_from_exception(step, element, exc_info)
    return beam.Map(convert)


def _inference_dead_letters(bad):
    batch, exc = bad
    info = (type(exc), exc, [])
    return [error_from_exception("inference", item, info) for item in batch]


class CountErrors(beam.DoFn):
    def __init__(self):
        self.errors = Metrics.counter(NAMESPACE, "error_records")

    def process(self, error: ErrorRecord):
        self.errors.inc()
        yield error.input_id, error


class SegmentInputs(beam.PTransform):
    """Input URIs -> per-input summaries, with every output written under cfg.output."""

    def __init__(self, cfg: RunConfig, handler: DeepLabModelHandler):
        super().__init__()
        self.cfg = cfg
        self.handler = handler

    def expand(self, uris):
        cfg = self.cfg
        planned, plan_failed = (
            uris | "Plan" >> beam.FlatMap(steps.plan_units, cfg).with_exception_handling())
        units = planned | "SpreadUnits" >> beam.Reshuffle()
        decoded = units | "Decode" >> beam.ParDo(DecodeUnit(cfg)).with_outputs(
            "status", "resumed", main="frames").with_exception_handling(partial=True)
        frames, statuses, decode_failed = decoded["frames"], decoded["status"], decoded["bad"]
        inferred, inference_failed = frames | "Segment" >> RunInference(
            KeyedModelHandler(self.handler)).with_exception_handling()
        written = inferred | "WriteFrames" >> beam.ParDo(WriteFrame(cfg)).with_outputs(
            "errors", main="records").with_exception_handling()
        records, write_failed = written["records"], written["bad"]
        finished = (
            {"frames": records, "status": statuses | "KeyStatus" >> beam.Map(lambda s: (s.unit.key, s))}
            | "GroupBySegment" >> beam.CoGroupByKey()
            | "FinishSegments" >> beam.ParDo(FinishSegment(cfg)).with_outputs(
                "errors", main="segments").with_exception_handling())
        errors = (
            (plan_failed | "PlanErrors" >> _dead_letters("plan"),
             decode_failed | "DecodeErrors" >> _dead_letters("decode"),
             inference_failed.failed_inferences
             | "InferenceErrors" >> beam.FlatMap(_inference_dead_letters),
             write_failed | "WriteErrors" >> _dead_letters("write"),
             written["errors"],
             finished["bad"] | "SegmentErrors" >> _dead_letters("finish_segment"),
             finished["errors"])
            | "AllErrors" >> beam.Flatten()
            | "CountErrors" >> beam.ParDo(CountErrors()))
        segments = (
            (finished["segments"],
             decoded["resumed"] | "KeyResumed" >> beam.Map(lambda r: (r.unit.input_id, r)))
            | "AllSegments" >> beam.Flatten())
        return (
            {"segments": segments, "errors": errors}
            | "GroupByInput" >> beam.CoGroupByKey()
            | "FinishInputs" >> beam.ParDo(FinishInput(cfg)))
