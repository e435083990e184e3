"""Command plumbing shared by `beam-seg report`, `eval` and `events`: every expected failure
becomes one `beam-seg: error: ...` line and an exit code, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import duckdb

from beam_seg import storage


class UsageError(Exception):
    """A bad argument or an unusable input: one line on stderr and exit code 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports errors as `beam-seg: error: ...` (one line, exit 2), no usage dump."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message)


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
        return 2
    except (duckdb.Error, OSError, ValueError) as exc:
        message = " ".join(str(exc).split())
        print(f"beam-seg: error: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1


def check_output_root(out: str) -> None:
    """A local output root must exist (a remote one is judged by what it holds)."""
    if not storage.is_dir(out):
        raise UsageError(f"output directory {out!r} does not exist")
