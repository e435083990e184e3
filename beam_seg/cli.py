"""The `beam-seg` command: a thin dispatcher over the pipeline and the after-run commands."""

from __future__ import annotations

import sys

from beam_seg.job.exits import EXIT_USAGE, ArgumentParser, UsageError, did_you_mean

COMMANDS = ("segment", "models", "report", "eval", "events")

USAGE = """usage: beam-seg COMMAND [options]

commands:
  segment INPUT... --output OUT   segment images and videos (a Beam pipeline; any Beam
                                  option passes through)
  report OUT                      summarise a run's tables (terminal table, plots, HTML
                                  that plays each video)
  events OUT                      list a run's events, or export them as Foxglove Event JSON
  eval OUT --ground-truth DIR     score label maps against ground truth
  models                          list the model registry

After a run, OUT may also be given as --output OUT. `beam-seg COMMAND --help` shows a
command's options; `beam-seg --version` the version."""


def models_main(argv: list[str]) -> int:
    from beam_seg.models import DEFAULT_MODEL, REGISTRY

    try:
        ArgumentParser(prog="beam-seg models", description="List the model registry.").parse_args(argv)
    except UsageError as exc:
        print(f"beam-seg: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    for spec in REGISTRY.values():
        mark = "*" if spec.name == DEFAULT_MODEL else " "
        print(f"{mark} {spec.name:28} {spec.format:12} {spec.labels:34} {spec.description}")
        print(f"    {spec.url or '(no URL: ' + (spec.how_to_get or 'none known') + ')'}")
        print(f"    sha256 {spec.sha256 or '(not pinned: the download is not verified)'}")
    print("\n* default. Offline mirror: set BEAM_SEG_MODEL_DIR to a directory holding these files.")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else EXIT_USAGE
    if argv[0] == "--version":
        from beam_seg import __version__

        print(f"beam-seg {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "segment":
        from beam_seg.job.launch import run

        return run(rest, save_main_session=False)
    if command == "models":
        return models_main(rest)
    if command == "report":
        from beam_seg.commands.report import main as report_main

        return report_main(rest)
    if command == "events":
        from beam_seg.commands.events_command import main as events_main

        return events_main(rest)
    if command == "eval":
        from beam_seg.commands.evaluate import main as eval_main

        return eval_main(rest)
    hint = did_you_mean(command, [*COMMANDS, "--version", "--help"], quote=True)
    print(f"beam-seg: error: unknown command {command!r}{hint} (`beam-seg --help` lists them)",
          file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
