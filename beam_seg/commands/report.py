"""`beam-seg report`: what a run saw, read from its coverage and events tables alone.

Every aggregation runs inside DuckDB (`queries.py`), so a run of hundreds of thousands of
frames reports in seconds. The command writes the terminal table (`terminal.py`), the
static plots (`plots.py`) and one HTML page (`page.py`) in which each video plays beside
its coverage and event timeline (`timeline.py`).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from beam_seg import storage
from beam_seg.commands import timeline
from beam_seg.commands.commands import ArgumentParser, UsageError, run_command
from beam_seg.commands.page import PageContent, html_report
from beam_seg.commands.plots import plot_coverage_over_time, plot_legend
from beam_seg.commands.queries import (
    TimeSeries,
    class_mix,
    coverage_over_time,
    duration_s,
    events_by_input,
    load_thumbnails,
    summarize_inputs,
    videos,
)
from beam_seg.commands.table import class_color, class_name, fraction_columns, open_coverage
from beam_seg.commands.terminal import format_duration, terminal_report
from beam_seg.labels import LabelSet
from beam_seg.naming import OutputLayout
from beam_seg.pipeline.error_records import failure_lines, recorded_failures
from beam_seg.tables import domain


@dataclass(frozen=True)
class ReportPaths:
    html: str
    legend: str
    plots: dict[str, str]  # input id -> plot file


def make_drive(video: dict, series: TimeSeries | None, label_set: LabelSet, events: list[dict],
               base: str | None, has_video: bool) -> timeline.Drive | None:
    """One video's player, or None for a video of one frame (nothing to play along)."""
    span = duration_s(video["frames"], video["first_s"], video["last_s"])
    if span is None or span <= 0 or series is None:
        return None
    names = [(c, class_name(label_set, c), class_color(label_set, c))
             for c in fraction_columns(label_set)]
    src = (timeline.url_join(base, f"videos/{video['input_id']}.mp4")
           if base is not None and has_video else None)
    title = f"{video['input_id']}: {video['frames']} frames, {format_duration(span)}"
    return timeline.Drive(
        video["input_id"], title, src, video["first_s"], span, span / video["frames"],
        series.times_s, timeline.bands_for(series.times_s, series.fractions, names),
        timeline.lanes_for(events, names), series.road_ahead, series.flicker)


def _plot_path(report_dir: str, iid: str) -> str:
    # Ids are [A-Za-z0-9._-] by construction; re-check, as the table may come from elsewhere.
    return storage.join(report_dir, f"coverage_{re.sub(r'[^A-Za-z0-9._-]+', '_', iid)}.png")


def build_report(out: str, html_path: str | None = None, max_plots: int = 50) -> tuple[str, ReportPaths]:
    """Write the plots and the HTML report of a run; return the terminal table and the paths."""
    report_dir = storage.join(out, "report")
    html_path = html_path or storage.join(report_dir, "report.html")
    base = storage.link_base(out, html_path)
    with open_coverage(out) as cov:
        inputs, total = summarize_inputs(cov)
        mixes = class_mix(cov)
        models = [r["model"] for r in cov.query("SELECT DISTINCT model FROM coverage ORDER BY 1")]
        all_videos = videos(cov)
        shown, skipped = all_videos[:max_plots], max(0, len(all_videos) - max_plots)
        ids = [v["input_id"] for v in shown]
        series = coverage_over_time(cov, ids)
        events = events_by_input(cov, ids)
        drives, plot_paths = [], {}
        for v in shown:
            iid, label_set = v["input_id"], cov.label_sets[v["label_set"]]
            length = format_duration(duration_s(v["frames"], v["first_s"], v["last_s"]))
            png = plot_coverage_over_time(series[iid], label_set, f"{iid}: {v['frames']} frames, {length}")
            plot_paths[iid] = _plot_path(report_dir, iid)
            storage.write_bytes(plot_paths[iid], png)
            has_video = storage.exists(storage.join(out, "videos", f"{iid}.mp4"))
            drive = make_drive(v, series.get(iid), label_set, events.get(iid, []), base, has_video)
            if drive is not None:
                drives.append(drive)
        legend_png = plot_legend(list(cov.label_sets.values()))
        legend_path = storage.join(report_dir, "legend.png")
        storage.write_bytes(legend_path, legend_png)
        thumbnails = load_thumbnails(cov)
        warnings = out_of_domain(cov)
        failures = recorded_failures(OutputLayout(out))
        page = html_report(PageContent(out, inputs, total, models, mixes, drives, skipped,
                                       legend_png, thumbnails, base, warnings, failures))
    storage.write_bytes(html_path, page.encode("utf-8"))
    text = terminal_report(inputs, total, mixes)
    if failures:
        text += f"\n\n{len(failures)} failed (error records in {storage.join(out, 'errors')}):\n" + \
            "\n".join(failure_lines([(source or iid, reason) for iid, source, reason in failures]))
    if warnings:
        text += "\n\nwarning: " + "\n         ".join(warnings)
    return text, ReportPaths(html_path, legend_path, plot_paths)


def out_of_domain(cov) -> list[str]:
    """The out-of-domain warning's lines for a run: every input's mean confidence in one
    query, and the preset from the done markers of the inputs that might be low."""
    inputs = domain.input_confidences(cov)
    return domain.warning_lines(domain.domain_warning(
        inputs, domain.presets_from_markers(cov.out, domain.candidates(inputs))), name_inputs=True)


def _command(args: argparse.Namespace) -> int:
    if args.max_plots < 0:
        raise UsageError("--max-plots must be 0 or more")
    if len(args.outputs) > 2:
        raise UsageError(f"report takes one OUT, or two to compare ({len(args.outputs)} given)")
    if len(args.outputs) == 2:
        from beam_seg.commands.compare_page import build_comparison

        text, html_path = build_comparison(*args.outputs, args.html)
        print(text)
        print(f"\nHTML:  {html_path}")
        return 0
    [out] = args.outputs
    table, paths = build_report(out, args.html, args.max_plots)
    print(table)
    print(f"\nplots: {storage.join(out, 'report')} ({len(paths.plots)} coverage plots, legend.png)")
    print(f"HTML:  {paths.html}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="beam-seg report",
        description="Summarise a run's coverage and events tables: a per-input table on the "
                    "terminal, coverage-over-time plots and an HTML report in which each video "
                    "plays beside its timeline (default OUT/report/). Given two runs of the same "
                    "inputs (e.g. two models), one page shows them side by side.")
    parser.add_output(many=True)
    parser.add_argument("--html", metavar="FILE", help="where to write the HTML report "
                        "(default OUT/report/report.html, or OUT_A/report/compare.html)")
    parser.add_argument("--max-plots", type=int, default=50, metavar="N",
                        help="plot and play at most N videos (default 50; all are in the tables)")
    return run_command(parser, sys.argv[1:] if argv is None else argv, _command)
