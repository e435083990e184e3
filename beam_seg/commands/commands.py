"""Command plumbing shared by `beam-seg report`, `eval` and `events`: every expected failure
becomes one `beam-seg: error: ...` line and an exit code (beam_seg/job/exits.py), never a
traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence

import duckdb

from beam_seg import storage
from beam_seg.job.exits import EXIT_FAILED, EXIT_USAGE, ArgumentParser, UsageError, did_you_mean

__all__ = ["ArgumentParser", "UsageError", "check_classes", "check_folder", "check_output_root",
           "run_command"]


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str],
                command: Callable[[argparse.Namespace], int]) -> int:
    """Parse and run, turning every expected failure into one error line instead of a traceback."""
    try:
        args = parser.parse_args(list(argv))
        return command(args)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except UsageError as exc:
        print(f"beam-seg: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (duckdb.Error, OSError, ValueError) as exc:
        message = " ".join(str(exc).split())
        print(f"beam-seg: error: {type(exc).__name__}: {message}", file=sys.stderr)
        return EXIT_FAILED


def check_folder(uri: str, what: str) -> None:
    """A local folder must exist and be a folder (a remote one is judged by what it holds)."""
    if storage.is_dir(uri):
        return
    if storage.exists(uri):
        raise UsageError(f"{what} {uri!r} is a file, not a folder")
    raise UsageError(f"{what} {uri!r} does not exist")


def check_output_root(out: str) -> None:
    """The output root of a `segment` run: an existing folder."""
    check_folder(out, "output folder")


def check_classes(wanted: Iterable[str], known: Sequence[str]) -> None:
    """Class names as in the run's columns: an unknown one is a usage error, with the nearest."""
    for name in wanted:
        if name not in known:
            raise UsageError(f"unknown class {name!r}{did_you_mean(name, known, quote=True)}")
