"""Beam runner set-up on the launcher: strict options, the DirectRunner's threads, how a
worker spends its cores on the model, and a quiet console."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from beam_seg.job.exits import UsageError, unknown_option

log = logging.getLogger("beam_seg")

LOCAL_RUNNERS = (None, "DirectRunner", "direct")


def beam_option_parser() -> argparse.ArgumentParser:
    """A parser that knows every option of every PipelineOptions class (as Beam builds it)."""
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    classes = {str(cls): cls for cls in PipelineOptions.__subclasses__()}
    for cls in classes.values():
        cls._add_argparse_args(parser)
    return parser


def check_pipeline_args(pipeline_args: list[str], own_options: list[str]) -> None:
    """An argument neither we nor Beam know is a typo: say so, with the nearest match."""
    parser = beam_option_parser()
    _, unknown = parser.parse_known_args(pipeline_args)
    for arg in unknown:
        if arg == "--":
            break
        if not arg.startswith("-"):
            raise UsageError(f"unexpected argument {arg!r} (inputs come before the options)")
        beam_names = [s for action in parser._actions for s in action.option_strings]
        raise unknown_option(arg, own_options + beam_names)


def check_runner(options: PipelineOptions) -> None:
    """An unknown --runner is one line, not Beam's traceback at pipeline creation."""
    from apache_beam.runners.runner import create_runner

    runner = options.view_as(StandardOptions).runner
    if runner in LOCAL_RUNNERS:
        return
    try:
        create_runner(runner)
    except (ValueError, ImportError) as exc:
        raise UsageError(f"--runner {runner}: {str(exc).splitlines()[0]}") from None


def is_local(options: PipelineOptions) -> bool:
    return options.view_as(StandardOptions).runner in LOCAL_RUNNERS


def tune_direct_runner(options: PipelineOptions, pipeline_args: list[str]) -> None:
    """On the DirectRunner, run as many bundles as cores in threads unless told otherwise.

    One process keeps one model, with an interpreter per thread (`choose_layout`), so the
    cores are hardly ever idle: every thread decodes, infers and writes its own frames
    (`make bench`: 0.82 of the bare model's rate on 2 cores). Beam's default runs one
    bundle at a time, so the model would wait for every decode and write.
    """
    if not is_local(options):
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
    if not is_local(options):
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


def configure_logging(verbose: bool = False) -> None:
    """Our own lines at INFO; Beam's only from ERROR up unless --verbose (its worker
    warnings say nothing a user can act on)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    root.setLevel(logging.INFO if verbose else logging.ERROR)
    for handler in root.handlers:
        if _not_noise not in handler.filters:
            handler.addFilter(_not_noise)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
