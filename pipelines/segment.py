"""Beam entry point: segment images and videos with DeepLab.

In the style of Beam's own examples: known arguments are ours, everything else goes to
PipelineOptions, so `--runner DataflowRunner --project … --region …` needs no code change.

    python -m pipelines.segment INPUT... --output OUT [--model NAME|PATH] [beam options]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
)

from beam_seg import __version__, naming, storage
from beam_seg.models import DEFAULT_MODEL, ModelNotFoundError, load_label_set, resolve
from beam_seg.models.inference import QUALITY_PRESETS, RESIZE_MODES, DeepLabModelHandler, InferenceSettings
from beam_seg.models.tiling import TileSettings
from beam_seg.pipeline.records import RunConfig
from beam_seg.pipeline.transforms import NAMESPACE, SegmentInputs

log = logging.getLogger("beam_seg")

EXIT_OK, EXIT_USAGE, EXIT_SOME_FAILED = 0, 2, 3


class UsageError(Exception):
    """Bad arguments or environment: reported in one line, exit code 2."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 0.9:
        raise argparse.ArgumentTypeError("must be between 0 and 0.9")
    return value


def _alpha(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Semantic segmentation of images and videos with DeepLab.",
        epilog="Any other --option is passed to Beam's PipelineOptions (e.g. --runner, "
               "--direct_num_workers, --project, --region, --temp_location).")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image/video files, directories or globs; local, gs:// or s3://")
    parser.add_argument("--output", required=True, metavar="OUT", help="output root directory or URI")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"registry name (see `beam-seg models`) or a .tflite / SavedModel / "
                             f"frozen-graph path or URI (default: {DEFAULT_MODEL})")
    parser.add_argument("--labels", default=None,
                        help="label set of a model outside the registry: cityscapes|pascal|ade20k|FILE")
    parser.add_argument("--alpha", type=_alpha, default=0.5, help="overlay opacity 0..1 (default 0.5)")
    parser.add_argument("--overlay-format", choices=("jpg", "png"), default="jpg")
    parser.add_argument("--every-nth-frame", type=_positive_int, default=1, metavar="N",
                        help="process frames 0, N, 2N, … of each video (default 1: all)")
    parser.add_argument("--segment-frames", type=_positive_int, default=150, metavar="N",
                        help="frames per video work unit spread over workers (default 150)")
    parser.add_argument("--quality", choices=tuple(QUALITY_PRESETS), default=None,
                        help="fast: one pass; balanced: a few overlapping windows; high: more windows "
                             "at a higher scale (default: balanced for videos, high for images)")
    parser.add_argument("--tile-scale", type=_positive_float, default=None, metavar="S",
                        help="sliding windows: working height in model-input heights (high: 2)")
    parser.add_argument("--tile-overlap", type=_fraction, default=None, metavar="F",
                        help="sliding windows: least overlap of neighbours, 0..0.9 of a window")
    parser.add_argument("--tile-aspect", type=_positive_float, default=None, metavar="A",
                        help="sliding windows: horizontal stretch of the working frame (balanced: 4/3)")
    parser.add_argument("--flip", action="store_true",
                        help="also segment each window mirrored and merge both (2x the cost)")
    parser.add_argument("--resize-mode", choices=RESIZE_MODES, default="stretch",
                        help="single pass (--quality fast): fit frames by stretching or by padding")
    parser.add_argument("--max-image-pixels", type=_positive_int, default=80_000_000,
                        help="refuse images with more pixels than this (default 80,000,000)")
    parser.add_argument("--batch-size", type=_positive_int, default=1,
                        help="frames per inference batch (default 1)")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="threads per TFLite interpreter (default: the worker's cores / interpreters)")
    parser.add_argument("--interpreters", type=_positive_int, default=None,
                        help="TFLite interpreters per worker process, inferring side by side "
                             "(default: one per DirectRunner thread, else 1)")
    parser.add_argument("--large-model", action="store_true",
                        help="load one model per machine instead of per process (Beam large_model)")
    parser.add_argument("--model-copies", type=_positive_int, default=None,
                        help="exact model copies per machine (Beam model_copies)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo inputs that a previous run into OUT already finished")
    return parser


@dataclass
class Plan:
    """What the launcher decided before the pipeline starts."""

    inputs: list[str]
    skipped: list[str] = field(default_factory=list)


def _has_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def expand_inputs(patterns: list[str]) -> list[str]:
    """Files, directories and globs -> a sorted, de-duplicated list of input URIs.

    Directories are searched recursively for known image/video extensions; explicit
    files and glob matches are kept whatever their type (bad ones become error records).
    """
    found: set[str] = set()
    for pattern in patterns:
        if _has_glob(pattern) and not storage.exists(pattern):
            matches = storage.list_files(pattern)
            if not matches:
                raise UsageError(f"no files match {pattern!r}")
            found.update(storage.absolute(m) for m in matches)
        elif storage.is_local(pattern) and os.path.isdir(pattern):
            for root, _, files in os.walk(pattern):
                found.update(os.path.abspath(os.path.join(root, f)) for f in files
                             if naming.kind_of(f) != "unsupported")
        elif storage.exists(pattern):
            found.add(storage.absolute(pattern))
        else:
            # A remote "directory" is a prefix: list it once and keep its images and videos.
            listed = [] if storage.is_local(pattern) else storage.list_files(pattern.rstrip("/") + "/**")
            if not listed:
                raise UsageError(f"input not found: {pattern}")
            found.update(m for m in listed if naming.kind_of(m) != "unsupported")
    return sorted(found)


def plan_run(patterns: list[str], cfg: RunConfig) -> Plan:
    root = cfg.layout.root.rstrip("/") + "/"
    inputs = [u for u in expand_inputs(patterns) if not u.startswith(root)]  # never our own outputs
    if cfg.overwrite:
        return Plan(inputs)
    done = {os.path.basename(p)[: -len(".json")] for p in storage.list_files(cfg.layout.done_glob())}
    todo = [u for u in inputs if naming.input_id(u) not in done]
    return Plan(todo, [u for u in inputs if naming.input_id(u) in done])


def check_output_writable(output: str) -> None:
    probe = storage.join(storage.absolute(output), ".beam_seg_write_check")
    try:
        storage.write_bytes(probe, b"ok")
        storage.delete(probe)
    except Exception as exc:  # any filesystem error means the same thing to the user
        raise UsageError(f"output {output} is not writable: {exc}") from None


def tile_settings(known: argparse.Namespace, kind: str) -> TileSettings | None:
    """The preset for this input kind, with any fine knob from the command line on top."""
    preset = known.quality or ("high" if kind == "image" else "balanced")
    tiles = QUALITY_PRESETS[preset]
    knobs = {name: value for name, value in (
        ("scale", known.tile_scale), ("overlap", known.tile_overlap), ("aspect", known.tile_aspect),
        ("flip", known.flip or None)) if value is not None}
    if knobs:
        tiles = dataclasses.replace(tiles or TileSettings(), **knobs)
    return tiles


def tune_direct_runner(options: PipelineOptions, pipeline_args: list[str]) -> None:
    """On the DirectRunner, run as many bundles as cores in threads unless told otherwise.

    One process keeps one model, with an interpreter per thread (`choose_layout`), so the
    cores are hardly ever idle: every thread decodes, infers and writes its own frames
    (`make bench`: 0.82 of the bare model's rate on 2 cores). Beam's default runs one
    bundle at a time, so the model would wait for every decode and write.
    """
    runner = options.view_as(StandardOptions).runner
    if runner not in (None, "DirectRunner", "direct"):
        return
    if any(arg.startswith(("--direct_running_mode", "--direct_num_workers")) for arg in pipeline_args):
        return
    direct = options.view_as(DirectOptions)
    direct.direct_running_mode = "multi_threading"
    direct.direct_num_workers = max(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class InferenceLayout:
    """How a worker process spends its cores on the model: interpreters side by side, each
    with its own threads."""

    interpreters: int
    threads: int


def choose_layout(options: PipelineOptions, threads: int | None,
                  interpreters: int | None) -> InferenceLayout:
    """Share the cores between Beam's workers and the model's interpreters.

    On the DirectRunner's threads (our default), each bundle thread gets its own
    single-thread interpreter: they never wait for each other, and the cores stay busy
    while one thread decodes or writes. With several processes, each gets an equal share
    of the cores for one interpreter. Remote runners (Dataflow) start one SDK process per
    vCPU, so each gets one thread; the launcher's own core count says nothing about them.
    """
    cores = os.cpu_count() or 1
    if options.view_as(StandardOptions).runner not in (None, "DirectRunner", "direct"):
        return InferenceLayout(interpreters or 1, threads or 1)
    direct = options.view_as(DirectOptions)
    workers = max(1, direct.direct_num_workers or 1)
    if direct.direct_running_mode == "multi_processing":
        return InferenceLayout(interpreters or 1, threads or max(1, cores // workers))
    if direct.direct_running_mode == "multi_threading":
        interpreters = interpreters or max(1, min(workers, cores // (threads or 1)))
    else:
        interpreters = interpreters or 1
    return InferenceLayout(interpreters, threads or max(1, cores // interpreters))


_KNOWN_NOISE = (
    "Resource module is not available",  # Beam's RunInference, when its optional imports fail
    "requested in with_outputs() but not declared",  # with_outputs + with_exception_handling
)


def _not_noise(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(noise in message for noise in _KNOWN_NOISE)


def configure_logging() -> None:
    """Our progress at INFO, Beam's at WARNING, minus two warnings Beam emits on every run."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s",
                            datefmt="%H:%M:%S", stream=sys.stderr)
    for handler in root.handlers:
        if _not_noise not in handler.filters:
            handler.addFilter(_not_noise)
    log.setLevel(logging.INFO)


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


def summarize(result, plan: Plan, cfg: RunConfig, seconds: float) -> dict:
    frames = _counter(result, "frames_segmented")
    failed = _counter(result, "inputs_failed")
    inferences = _counter(result, "num_inferences")
    latency_us = _distribution_sum(result, "inference_batch_latency_micro_secs")
    return {
        "inputs": len(plan.inputs) + len(plan.skipped),
        "processed": len(plan.inputs),
        "skipped_already_done": len(plan.skipped),
        "succeeded": _counter(result, "inputs_succeeded"),
        "failed": failed,
        "frames_decoded": _counter(result, "frames_decoded"),
        "frames_segmented": frames,
        "segments_resumed": _counter(result, "segments_resumed"),
        "error_records": _counter(result, "error_records"),
        "inference_ms_per_frame": round(latency_us / inferences / 1000, 1) if inferences else None,
        "wall_time_s": round(seconds, 1),
        "frames_per_s": round(frames / seconds, 2) if seconds > 0 else None,
        "output": cfg.layout.root,
    }


def print_summary(summary: dict, cfg: RunConfig, stream=None) -> None:
    """The end-of-run summary, to `stream` or whatever sys.stdout is at the time."""
    layout = cfg.layout
    lines = [
        "",
        "== beam-seg summary ==",
        f"inputs       {summary['inputs']} ({summary['processed']} processed, "
        f"{summary['skipped_already_done']} skipped as already done; --overwrite redoes them)",
        f"succeeded    {summary['succeeded']}",
        f"failed       {summary['failed']}"
        + (f"  -> error records in {storage.join(layout.root, 'errors')}" if summary["failed"] else ""),
        f"frames       {summary['frames_segmented']} segmented ({summary['frames_decoded']} decoded)"
        + (f"; {summary['segments_resumed']} video segments kept from an unfinished earlier run"
           if summary["segments_resumed"] else ""),
        f"wall time    {summary['wall_time_s']} s ({summary['frames_per_s']} frames/s)",
    ]
    if summary["inference_ms_per_frame"] is not None:
        lines.append(f"inference    {summary['inference_ms_per_frame']} ms per frame (mean, "
                     f"pre/post-processing included)")
    lines += [
        f"outputs      {layout.root}",
        "  labels/    label-map PNGs (palette PNG, pixel value = class id)",
        f"  overlays/  frames blended with label colours ({cfg.overlay_format})",
        f"  coverage/  Parquet table, one row per frame: {layout.coverage_glob()}",
        "  videos/    segmented videos (H.264 mp4)",
    ]
    print("\n".join(lines), file=stream or sys.stdout)


def run(argv: list[str] | None = None, save_main_session: bool = True,
        test_pipeline: beam.Pipeline | None = None) -> int:
    """Parse arguments, launch the pipeline, print the summary; returns the exit code."""
    configure_logging()
    parser = build_parser()
    known, pipeline_args = parser.parse_known_args(argv)
    try:
        return _run(known, pipeline_args, save_main_session, test_pipeline)
    except (UsageError, ModelNotFoundError) as exc:
        print(f"beam-seg: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


# The options that change what a frame's outputs look like; the others (threads, batch
# size, …) only change how fast they are made.
_OUTPUT_OPTIONS = ("model", "labels", "alpha", "overlay_format", "every_nth_frame", "segment_frames",
                   "quality", "tile_scale", "tile_overlap", "tile_aspect", "flip", "resize_mode")


def output_fingerprint(known: argparse.Namespace) -> str:
    """A digest of this version and of every option that shapes the outputs."""
    options = {name: getattr(known, name) for name in _OUTPUT_OPTIONS}
    text = json.dumps({"beam_seg": __version__, **options}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _run(known, pipeline_args, save_main_session, test_pipeline) -> int:
    started = time.monotonic()
    options = PipelineOptions(pipeline_args)
    options.view_as(SetupOptions).save_main_session = save_main_session
    tune_direct_runner(options, pipeline_args)
    cfg = RunConfig(
        output=storage.absolute(known.output), model=known.model, labels=known.labels,
        alpha=known.alpha, overlay_format=known.overlay_format,
        every_nth_frame=known.every_nth_frame, segment_frames=known.segment_frames,
        max_image_pixels=known.max_image_pixels, resize_mode=known.resize_mode,
        overwrite=known.overwrite, fingerprint=output_fingerprint(known))
    resolved = resolve(cfg.model, cfg.labels)
    load_label_set(resolved.labels)
    check_output_writable(cfg.output)
    plan = plan_run(known.inputs, cfg)
    layout = choose_layout(options, known.threads, known.interpreters)
    log.info("beam-seg: %d inputs to process, %d already done; model %s, %d interpreter(s) "
             "x %d thread(s) per process", len(plan.inputs), len(plan.skipped), resolved.name,
             layout.interpreters, layout.threads)
    handler = DeepLabModelHandler(
        cfg.model, cfg.labels, layout.threads,
        {kind: InferenceSettings(cfg.resize_mode, tile_settings(known, kind)) for kind in ("image", "video")},
        batch_size=known.batch_size, large_model=known.large_model, model_copies=known.model_copies,
        interpreters=layout.interpreters)
    result = None
    if plan.inputs:
        pipeline = test_pipeline or beam.Pipeline(options=options)
        _ = (pipeline
             | "Inputs" >> beam.Create(plan.inputs)
             | "SegmentInputs" >> SegmentInputs(cfg, handler))
        result = pipeline.run()
        if options.view_as(StandardOptions).runner not in (None, "DirectRunner", "direct"):
            log.info("waiting for the job to finish")
        result.wait_until_finish()
    summary = summarize(result, plan, cfg, time.monotonic() - started)
    print_summary(summary, cfg)
    return EXIT_SOME_FAILED if summary["failed"] else EXIT_OK


if __name__ == "__main__":
    sys.exit(run())
