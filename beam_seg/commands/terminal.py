"""The report as plain text for the terminal: one aligned table per label set."""

from __future__ import annotations

from collections.abc import Sequence

from beam_seg.commands.queries import ClassMix, InputSummary, top_classes
from beam_seg.commands.table import class_name


def percent(value: float | None) -> str:
    if value is None:
        return "-"
    if 0 < value < 0.0005:
        return "<0.1%"  # present but tiny: not the same as absent
    return f"{100 * value:.1f}%"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(seconds, 60)
    if minutes >= 60:
        hours, minutes = divmod(minutes, 60)
        return f"{int(hours)}:{int(minutes):02d}:{secs:04.1f}"
    return f"{int(minutes)}:{secs:04.1f}"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """A plain aligned text table (ASCII only, so any terminal shows it)."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w)
                         for c, w, r in zip(cells, widths, right, strict=True)).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])


def input_table_rows(inputs: Sequence[InputSummary], mix: ClassMix) -> tuple[list[str], list[list[str]]]:
    """The per-input table of one label set, as strings (shared by the terminal and the HTML)."""
    label_set = mix.label_set
    main = mix.main_columns()
    headers = ["input", "kind", "frames", "duration", "size",
               *[class_name(label_set, c) for c in main], "top classes"]
    rows = []
    for s in inputs:
        if s.label_set != label_set.name:
            continue
        top = ", ".join(f"{name} {percent(v)}" for name, v in top_classes(s.means, label_set))
        rows.append([s.input_id, s.kind, str(s.frames), format_duration(s.duration_s),
                     f"{s.width}x{s.height}", *[percent(s.means.get(c)) for c in main], top])
    return headers, rows


def terminal_report(inputs: Sequence[InputSummary], total_inputs: int, mixes: Sequence[ClassMix]) -> str:
    parts = []
    for mix in mixes:
        headers, rows = input_table_rows(inputs, mix)
        right = [False, False, True, True, True, *[True] * (len(headers) - 6), False]
        parts.append(f"label set {mix.label_set.name}: {mix.inputs} inputs, {mix.frames} frames "
                     f"(main-class columns: mean coverage over the input's frames)")
        parts.append(text_table(headers, rows, right))
    if total_inputs > len(inputs):
        parts.append(f"... and {total_inputs - len(inputs)} more inputs (the first {len(inputs)} shown)")
    return "\n\n".join(parts)


