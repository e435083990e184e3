"""The `beam-seg` command: a thin dispatcher over the pipeline and the analytics modules."""

from __future__ import annotations

import argparse
import sys

USAGE = """usage: beam-seg COMMAND [options]

commands:
  segment   segment images and videos (a Beam pipeline; any Beam option passes through)
  models    list the model registry
  report    summarise a run's tables (terminal table, plots, HTML that plays each video)
  eval      score label maps against Cityscapes-layout ground truth
  events    list a run's events, or export them as Foxglove Event JSON

`beam-seg COMMAND --help` shows a command's options; `beam-seg --version` the version."""


def models_main(argv: list[str]) -> int:
    from beam_seg.models import DEFAULT_MODEL, REGISTRY

    argparse.ArgumentParser(prog="beam-seg models", description="List the model registry.").parse_args(argv)
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
        print(USAGE)
        return 0 if argv else 2
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
        from beam_seg.analytics.report import main as report_main

        return report_main(rest)
    if command == "events":
        from beam_seg.analytics.events_command import main as events_main

        return events_main(rest)
    if command == "eval":
        from beam_seg.analytics.evaluate import main as eval_main

        return eval_main(rest)
    print(f"beam-seg: error: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
