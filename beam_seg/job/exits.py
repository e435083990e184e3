"""How every `beam-seg` command ends: its exit codes, the one exception that means "bad
usage", and the parser that turns every bad argument into one line with a suggestion."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable, Sequence

EXIT_OK = 0
EXIT_FAILED = 1  # an after-run command could not finish (an unreadable table, a failed write)
EXIT_USAGE = 2  # bad arguments or environment, reported in one line
EXIT_SOME_FAILED = 3  # the run finished, some inputs have error records
EXIT_CANNOT_WRITE = 4  # the output cannot be written at all (full, read-only, unreachable)
EXIT_INTERRUPTED = 130  # Ctrl-C: what finished is kept, a re-run resumes


class UsageError(Exception):
    """Bad arguments or environment: reported in one line, exit code 2."""


class CannotWrite(Exception):
    """The output cannot be written, not even error records: one line, exit code 4."""


def did_you_mean(word: str, choices: Iterable[str], quote: bool = False) -> str:
    """'; did you mean --format?' for the nearest of `choices`, or '' when none is near."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        return ""
    return f"; did you mean {close[0]!r}?" if quote else f"; did you mean {close[0]}?"


def unknown_option(arg: str, known: Iterable[str]) -> UsageError:
    """The error for an argument no parser took: an option with the nearest known one, or a
    stray plain argument."""
    if not arg.startswith("-"):
        return UsageError(f"unexpected argument {arg!r}")
    name = arg.split("=", 1)[0]
    return UsageError(f"unknown option {name}{did_you_mean(name, known)}")


class ArgumentParser(argparse.ArgumentParser):
    """argparse as every after-run command uses it: no abbreviated options, an unknown option
    named with the nearest known one, every error one `UsageError` line (no usage dump).

    `add_output()` adds the output root the one way every command takes it: `OUT` as a plain
    argument or `--output OUT` (as `segment` takes it), the same thing.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._outputs: str | None = None  # "one" or "many" once add_output() was called

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message)

    def add_output(self, many: bool = False) -> None:
        what = "output root(s)" if many else "output root"
        self.add_argument("_out_args", nargs="*" if many else "?", metavar="OUT",
                          help=f"the {what} of a `beam-seg segment` run (local or gs://)")
        self.add_argument("--output", dest="_out_flags", action="append", default=[],
                          metavar="OUT", help="the same as OUT, as `beam-seg segment` takes it")
        self._outputs = "many" if many else "one"

    def option_strings(self) -> list[str]:
        return [s for action in self._actions for s in action.option_strings]

    def parse_args(self, args: Sequence[str] | None = None, namespace=None):  # type: ignore[override]
        args = list(sys.argv[1:] if args is None else args)
        try:
            parsed, unknown = self.parse_known_args(args, namespace)
        except UsageError:  # a missing required option: a typo of it is the better news
            known = self.option_strings()
            typo = next((a for a in args if a.startswith("-") and a.split("=", 1)[0] not in known), None)
            if typo:
                raise unknown_option(typo, known) from None
            raise
        if unknown:
            raise unknown_option(unknown[0], self.option_strings())
        if self._outputs:
            positional = parsed._out_args
            outs = [*(positional if isinstance(positional, list) else [positional] if positional
                      else []), *parsed._out_flags]
            del parsed._out_args, parsed._out_flags
            if not outs:
                raise UsageError("the output root OUT is required (the folder a `beam-seg "
                                 "segment` run wrote)")
            if self._outputs == "one" and len(outs) > 1:
                raise UsageError(f"one output root, please (got {', '.join(map(repr, outs))})")
            parsed.outputs, parsed.output = outs, outs[0]
        return parsed
