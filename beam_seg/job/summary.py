"""The end-of-run summary, read from Beam's metrics (and the plan) on the launcher."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import apache_beam as beam

from beam_seg import naming, storage
from beam_seg.config import RunConfig
from beam_seg.job.inputs import Plan
from beam_seg.pipeline.error_records import failure_lines, recorded_failures
from beam_seg.pipeline.transforms import NAMESPACE
from beam_seg.tables import domain

log = logging.getLogger("beam_seg")


def _query(result, name: str, kind: str) -> list:
    """Committed (else attempted) values of a beam_seg metric; [] where a runner has none."""
    if result is None:
        return []
    try:
        metrics = result.metrics().query(
            beam.metrics.MetricsFilter().with_namespace(NAMESPACE).with_name(name))
    except Exception:  # a runner without metrics support still gets a summary
        return []
    values = [m.committed if m.committed is not None else m.attempted for m in metrics[kind]]
    return [v for v in values if v is not None]


def _counter(result, name: str) -> int:
    return int(sum(_query(result, name, "counters")))


def _distribution_sum(result, name: str) -> float:
    return float(sum(d.sum for d in _query(result, name, "distributions")))


MAX_FAILURES_SHOWN = 20


def failed_inputs(plan: Plan, cfg: RunConfig) -> list[tuple[str, str]]:
    """(source, the reason of its cause) of every input this run processed that has error
    records."""
    ids = {naming.input_id(uri): uri for uri in plan.inputs}
    return [(ids[iid], reason) for iid, _, reason in recorded_failures(cfg.layout, only=ids)]


def print_failures(failures: list[tuple[str, str]], stream: TextIO | None = None) -> None:
    """One line per failed input, at most MAX_FAILURES_SHOWN, then how many more."""
    for line in failure_lines(failures, MAX_FAILURES_SHOWN):
        print(line, file=stream or sys.stdout)


# Inputs whose coverage files the summary reads for the out-of-domain check: about 1 ms a
# local file (5000 in 6 s on a loaded 2-core machine), so a larger run is judged on an even
# sample of its inputs and says so.
MAX_JUDGED_INPUTS = 2000


def out_of_domain(plan: Plan, cfg: RunConfig, limit: int = MAX_JUDGED_INPUTS) -> list[str]:
    """The out-of-domain warning's lines for this run's inputs (done now or earlier), read
    from their coverage files; none when the model is not calibrated or nothing can be read."""
    ids = sorted({naming.input_id(uri) for uri in (*plan.inputs, *plan.skipped)})
    sample = ids[::-(-len(ids) // limit)] if len(ids) > limit else ids
    try:
        inputs = domain.run_confidences(cfg.layout.root, sample)
    except Exception as exc:  # a courtesy: the summary must still come out
        log.debug("no out-of-domain check: %s", exc)
        return []
    presets = {i.input_id: cfg.preset(i.kind) for i in inputs}
    lines = domain.warning_lines(domain.domain_warning(inputs, presets))
    if lines and len(sample) < len(ids):
        lines[0] += f" (an even sample of {len(sample)} of the run's {len(ids)} inputs)"
    return lines


def summarize(result, plan: Plan, cfg: RunConfig, seconds: float) -> dict:
    frames = _counter(result, "frames_segmented")
    inferences = _counter(result, "num_inferences")
    latency_us = _distribution_sum(result, "inference_batch_latency_micro_secs")
    return {
        "inputs": len(plan.inputs) + len(plan.skipped),
        "processed": len(plan.inputs),
        "videos_processed": sum(naming.kind_of(uri) == "video" for uri in plan.inputs),
        "skipped_already_done": len(plan.skipped),
        "source_changed": len(plan.changed),
        "segments_source_changed": _counter(result, "segments_source_changed"),
        "unrecorded": _counter(result, "inputs_unrecorded"),
        "ignored_files": len(plan.ignored),
        "succeeded": _counter(result, "inputs_succeeded"),
        "failed": _counter(result, "inputs_failed"),
        "frames_decoded": _counter(result, "frames_decoded"),
        "frames_context": _counter(result, "frames_context"),
        "frames_segmented": frames,
        "segments_resumed": _counter(result, "segments_resumed"),
        "error_records": _counter(result, "error_records"),
        "inference_ms_per_frame": round(latency_us / inferences / 1000, 1) if inferences else None,
        "wall_time_s": round(seconds, 1),
        "frames_per_s": round(frames / seconds, 2) if seconds > 0 else None,
        "output": cfg.layout.root,
        "out_of_domain": out_of_domain(plan, cfg),
    }


def summary_lines(summary: dict, cfg: RunConfig, model_name: str) -> list[str]:
    layout = cfg.layout
    quality = cfg.quality or "balanced for videos, high for images"
    lines = [
        "",
        "== beam-seg summary ==",
        f"model        {model_name}, quality {quality}",
        f"inputs       {summary['inputs']}: {summary['succeeded']} succeeded, {summary['failed']} "
        f"failed, {summary['skipped_already_done']} skipped as already done"
        + (" (--overwrite redoes them)" if summary["skipped_already_done"] else ""),
    ]
    if summary["source_changed"] or summary["segments_source_changed"]:
        lines.append(f"redone       {summary['source_changed']} finished inputs and "
                     f"{summary['segments_source_changed']} video segments: their source "
                     "changed since they were made (size/mtime/inode, or GCS generation)")
    if summary["failed"]:
        lines.append(f"errors       {storage.join(layout.root, 'errors')}/<input id>.jsonl")
    if summary["ignored_files"]:
        lines.append(f"ignored      {summary['ignored_files']} files in the input folders that are "
                     "not images or videos (--verbose lists them)")
    lines += [
        f"frames       {summary['frames_segmented']} segmented ({summary['frames_decoded']} decoded"
        + (f", and {summary['frames_context']} more as temporal fusion's neighbours"
           if summary["frames_context"] else "") + ")"
        + (f"; {summary['segments_resumed']} video segments kept from an unfinished earlier run"
           if summary["segments_resumed"] else ""),
        f"wall time    {summary['wall_time_s']} s ({summary['frames_per_s']} frames/s)",
    ]
    if summary["inference_ms_per_frame"] is not None:
        lines.append(f"inference    {summary['inference_ms_per_frame']} ms per frame (mean, "
                     f"pre/post-processing included)")
    lines += [f"{'warning' if i == 0 else '':12} {line}"
              for i, line in enumerate(summary.get("out_of_domain", []))]
    lines += output_lines(summary, cfg)
    return lines


def output_lines(summary: dict, cfg: RunConfig) -> list[str]:
    """The output folders this run wrote to, and only those: videos/ and events/ only when it
    processed a video."""
    layout = cfg.layout
    if not summary["processed"]:
        return [f"outputs      {layout.root} (nothing new: every input was already done)"]
    lines = [
        f"outputs      {layout.root}",
        "  labels/    label-map PNGs (palette PNG, pixel value = class id)",
        f"  overlays/  frames blended with label colours ({cfg.overlay_format})",
        f"  coverage/  Parquet table, one row per frame: {layout.coverage_glob()}",
    ]
    if summary.get("videos_processed"):
        legend = "" if cfg.legend == "none" else ", with a legend of the classes present"
        lines += [f"  videos/    segmented videos (H.264 mp4{legend})",
                  f"  events/    Parquet table, one row per interval a class is present: "
                  f"{storage.join(layout.root, 'events', '*.parquet')}"]
    return lines


def print_summary(summary: dict, cfg: RunConfig, model_name: str, stream: TextIO | None = None) -> None:
    """The end-of-run summary, to `stream` or whatever sys.stdout is at the time."""
    print("\n".join(summary_lines(summary, cfg, model_name)), file=stream or sys.stdout)
