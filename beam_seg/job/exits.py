"""Exit codes of `beam-seg segment`, and the one exception that means "bad usage"."""

EXIT_OK = 0
EXIT_USAGE = 2  # bad arguments or environment, reported in one line
EXIT_SOME_FAILED = 3  # the run finished, some inputs have error records
EXIT_CANNOT_WRITE = 4  # the output cannot be written at all (full, read-only, unreachable)
EXIT_INTERRUPTED = 130  # Ctrl-C: what finished is kept, a re-run resumes


class UsageError(Exception):
    """Bad arguments or environment: reported in one line, exit code 2."""


class CannotWrite(Exception):
    """The output cannot be written, not even error records: one line, exit code 4."""
