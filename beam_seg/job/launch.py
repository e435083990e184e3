"""`beam-seg segment`: parse, plan, run the pipeline, summarise; every way out has an exit
code and at most one line of error, never a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from beam_seg import __version__, storage
from beam_seg.config import RunConfig, add_options, option_names
from beam_seg.job import runner, stop
from beam_seg.job.exits import (
    EXIT_CANNOT_WRITE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    CannotWrite,
    UsageError,
)
from beam_seg.job.inputs import Discovered, Plan, check_output_writable, expand_inputs, plan_run
from beam_seg.job.lock import OutputLock
from beam_seg.job.model_check import check_label_set
from beam_seg.job.progress import ProgressWatcher
from beam_seg.job.summary import failed_inputs, print_failures, print_summary, summarize
from beam_seg.models import ModelNotFoundError, load_label_set, resolve
from beam_seg.models.handler import DeepLabModelHandler
from beam_seg.models.onnx_runtime import load_io_override, parse_providers
from beam_seg.pipeline.markers import clear_done_markers
from beam_seg.pipeline.transforms import SegmentInputs

log = logging.getLogger("beam_seg")


class _OneLineErrors(argparse.ArgumentParser):
    """A bad argument is one line, as the other commands say it, not a usage block first."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(prog: str = "beam-seg segment") -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog=prog, allow_abbrev=False,
        description="Semantic segmentation of images and videos with DeepLab.",
        epilog="Any other --option must be one of Beam's PipelineOptions (e.g. --runner, "
               "--direct_running_mode, --direct_num_workers, --project, --region, "
               "--temp_location, --setup_file).")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image/video files, directories or globs; local, gs:// or s3://")
    add_options(parser)
    parser.add_argument("--version", action="version", version=f"beam-seg {__version__}")
    return parser


def run(argv: list[str] | None = None, save_main_session: bool = True,
        prog: str = "beam-seg segment") -> int:
    """Parse arguments, launch the pipeline, print the summary; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with stop.signals_handled():
        return _run(argv, save_main_session, prog)


def _run(argv: list[str], save_main_session: bool, prog: str) -> int:
    parser = build_parser(prog)
    known, pipeline_args = parser.parse_known_args(argv)
    try:
        cfg = RunConfig.from_args(known)
    except ValueError as exc:  # options that clash (e.g. --event-exit above --event-enter)
        parser.error(str(exc))
    runner.configure_logging(cfg.verbose)
    command = f"{prog} {shlex.join(argv)}"
    try:
        runner.check_pipeline_args(pipeline_args, option_names())
        return _launch(cfg, known.inputs, pipeline_args, save_main_session, command)
    except stop.Interrupted as exc:  # before the run held its lock: nothing written yet
        print(f"\nbeam-seg: interrupted by {exc}; nothing was written; to start, run: {command}",
              file=sys.stderr)
        return exc.exit_code
    except (UsageError, ModelNotFoundError) as exc:
        print(f"beam-seg: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # storage that fails under the run: one line, never a traceback
        reason = str(exc) if isinstance(exc, CannotWrite) else storage.outage_reason(exc)
        if reason is None:
            raise
        print(f"beam-seg: error: {reason}" if isinstance(exc, CannotWrite) else
              f"beam-seg: error: cannot write to {cfg.layout.root}: {reason}", file=sys.stderr)
        return EXIT_CANNOT_WRITE
    except KeyboardInterrupt:  # signals not ours to handle (run() outside the main thread)
        print("\n" + interrupted_line(cfg, "SIGINT", command), file=sys.stderr)
        return EXIT_INTERRUPTED


def _count(pattern: str) -> int:
    try:
        return len(storage.list_files(pattern))
    except Exception:  # the count is a courtesy; the message must still come out
        return 0


def interrupted_line(cfg: RunConfig, signal_name: str, command: str) -> str:
    """The one line an interrupted run ends with: what is kept, and how to resume."""
    inputs = _count(cfg.layout.done_glob())
    segments = _count(cfg.layout.segment_markers_glob())
    return (f"beam-seg: interrupted by {signal_name}: {inputs} finished input"
            f"{'' if inputs == 1 else 's'} and {segments} finished video segment"
            f"{'' if segments == 1 else 's'} of unfinished videos are kept in {cfg.layout.root}; "
            f"to resume, run the same command again: {command}")


def _launch(cfg: RunConfig, inputs: list[str], pipeline_args: list[str],
            save_main_session: bool, command: str) -> int:
    started = time.monotonic()
    storage.set_deadline(cfg.storage_deadline)
    storage.reset_outage()
    options = PipelineOptions(pipeline_args)
    options.view_as(SetupOptions).save_main_session = save_main_session
    runner.check_runner(options)
    runner.tune_direct_runner(options, pipeline_args)
    resolved = resolve(cfg.model, cfg.labels)
    label_set = load_label_set(resolved.labels)
    check_label_set(cfg.model, resolved, label_set)
    check_onnx(cfg, resolved, label_set.num_classes)
    discovered = expand_inputs(inputs)  # a missing or empty input: exit 2 before OUT is made
    check_output_writable(cfg.output)
    with OutputLock(cfg.layout.root) as lock, stop.stop_writes_on_signal(  # one writer per root
            lambda: lock.release(join_s=0.5),
            lambda signum: interrupted_line(cfg, stop.signal_name(signum), command)):
        return _launch_locked(cfg, inputs, discovered, options, resolved, started)


def check_onnx(cfg: RunConfig, resolved, num_classes: int) -> None:
    """An ONNX model is loaded once at launch, so that a description it does not fit (no score
    output, an unknown layout, a size it refuses) or a missing provider is said in one line
    before any work starts."""
    providers = parse_providers(cfg.onnx_providers)
    io = load_io_override(cfg.onnx_spec)
    if resolved.format != "onnx":
        if io is not None:
            raise UsageError(f"--onnx-spec describes ONNX models; {resolved.name} is {resolved.format}")
        if cfg.onnx_providers != "cpu":
            log.warning("beam-seg: --onnx-providers applies to ONNX models; %s runs on the CPU",
                        resolved.name)
        return
    from beam_seg.models import load_model

    load_model(resolved, 1, 1, num_classes, providers, io)


def _launch_locked(cfg: RunConfig, inputs: list[str], discovered: Discovered,
                   options: PipelineOptions, resolved, started: float) -> int:
    plan = plan_run(inputs, cfg, discovered)
    # only now: the run's checks have passed and it holds the lock, so no writer is in flight
    stale = storage.remove_stale_temps(cfg.layout.root)
    if stale:
        log.warning("beam-seg: removed %d temporary files that an interrupted run left in %s",
                    stale, cfg.layout.root)
    for uri, gone in plan.missing.items():
        log.warning("beam-seg: %s was done, but its outputs are gone (%s); redone", uri, gone)
    if cfg.overwrite or plan.missing:  # the inputs about to be redone are no longer done
        clear_done_markers(plan.inputs if cfg.overwrite else list(plan.missing), cfg.layout)
    layout = runner.choose_layout(options, cfg.threads, cfg.interpreters)
    log.info("beam-seg: %d inputs to process, %d already done; model %s, %d interpreter(s) "
             "x %d thread(s) per process", len(plan.inputs), len(plan.skipped), resolved.name,
             layout.interpreters, layout.threads)
    for uri in plan.outside:
        log.warning("beam-seg: not followed (a symlink out of the input folder; name it on the "
                    "command line to include it): %s", uri)
    if cfg.verbose:
        for uri in plan.ignored:
            log.info("ignored (not an image or video): %s", uri)
    handler = DeepLabModelHandler(
        cfg.model, cfg.labels, layout.threads, cfg.inference_settings(),
        batch_size=cfg.batch_size, large_model=cfg.large_model, model_copies=cfg.model_copies,
        interpreters=layout.interpreters, temporal=cfg.temporal_frames(),
        onnx_providers=parse_providers(cfg.onnx_providers), onnx_io=load_io_override(cfg.onnx_spec))
    result = _run_pipeline(plan, cfg, handler, options) if plan.inputs else None
    storage.remove_empty_work_folder(cfg.layout.root)
    summary = summarize(result, plan, cfg, time.monotonic() - started)
    print_failures(failed_inputs(plan, cfg))
    print_summary(summary, cfg, resolved.name)
    if summary["unrecorded"]:
        raise CannotWrite(f"cannot write to {cfg.layout.root}: {summary['unrecorded']} inputs "
                          "failed and not even their error records could be written ("
                          f"{_write_failure(cfg)}); a re-run resumes")
    return EXIT_SOME_FAILED if summary["failed"] else EXIT_OK


def _write_failure(cfg: RunConfig) -> str:
    """Why OUT cannot be written now, for the exit-4 line: the outage this process saw, else
    what a fresh write says."""
    if storage.outage():
        return storage.outage()
    try:
        storage.probe_write(cfg.layout.root)
    except Exception as exc:
        return storage.outage_reason(exc) or f"{type(exc).__name__}: {exc}"
    return "it is writable again; see the log above"


def _run_pipeline(plan: Plan, cfg: RunConfig, handler: DeepLabModelHandler,
                  options: PipelineOptions):
    if not runner.is_local(options):
        return _run_and_wait(plan, cfg, handler, options)
    with ProgressWatcher() as watcher:
        return _run_and_wait(plan, dataclasses.replace(cfg, progress_dir=watcher.dir), handler, options)


def _run_and_wait(plan: Plan, cfg: RunConfig, handler: DeepLabModelHandler,
                  options: PipelineOptions):
    pipeline = beam.Pipeline(options=options)
    if getattr(pipeline, "local_tempdir", None):
        storage.track_scratch(pipeline.local_tempdir)  # Beam removes it, unless the run is stopped
    _ = (pipeline
         | "Inputs" >> beam.Create(plan.inputs)
         | "SegmentInputs" >> SegmentInputs(cfg, handler))
    if not runner.is_local(options):
        # submitted from the main thread: a portable runner's job server sets signal handlers
        result = pipeline.run()
        log.info("waiting for the job to finish")
        stop.run_beside_main_thread(result.wait_until_finish)
        return result

    # The DirectRunner's run() is the whole run. It stays on Beam's FnApiRunner here (the
    # `with_exception_handling` steps rule out Prism, whose job server would set signal
    # handlers, which Python allows on the main thread only)
    def run_to_the_end():
        result = pipeline.run()
        result.wait_until_finish()
        return result

    return stop.run_beside_main_thread(run_to_the_end)

