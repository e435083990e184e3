"""Static plots of a run with matplotlib's Agg backend (no display needed): each video's
coverage over time as a stacked area in the label colours, and the label-colour legend."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np

from beam_seg.commands.queries import TimeSeries
from beam_seg.commands.table import class_color, class_name, fraction_columns
from beam_seg.labels import LabelSet
from beam_seg.tables.coverage import IGNORE_COLUMN

LEGEND_ENTRIES = 16


def _rgb(color: tuple[int, int, int]) -> tuple[float, float, float]:
    return (color[0] / 255, color[1] / 255, color[2] / 255)


def _figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    # class names and file names are plain text: `$\frac{a$` is a name, not mathtext to parse
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def plot_coverage_over_time(series: TimeSeries, label_set: LabelSet, title: str) -> bytes:
    """A stacked area of class coverage over time in the label colours, as PNG bytes."""
    plt = _pyplot()
    columns = [c for c in [*fraction_columns(label_set), IGNORE_COLUMN]
               if c in series.fractions and series.fractions[c].max() > 0]
    times = series.times_s
    values = [series.fractions[c] for c in columns]
    if len(times) == 1:  # one bucket: draw a flat band rather than nothing
        times = np.array([times[0], times[0] + 1.0])
        values = [np.repeat(v, 2) for v in values]
    fig, ax = plt.subplots(figsize=(11, 3.6))
    ax.stackplot(times, values, colors=[_rgb(class_color(label_set, c)) for c in columns],
                 labels=[class_name(label_set, c) for c in columns], linewidth=0)
    ax.set_xlim(times[0], times[-1])
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("share of frame")
    ax.set_title(title, fontsize=11, loc="left")
    # Legend: the classes worth naming, top of the stack first, beside the plot.
    handles, labels = ax.get_legend_handles_labels()
    keep = [i for i, c in enumerate(columns) if series.fractions[c].mean() >= 0.005]
    keep = sorted(sorted(keep, key=lambda i: -series.fractions[columns[i]].mean())[:LEGEND_ENTRIES],
                  reverse=True)  # the largest classes only, so the legend fits beside the plot
    ax.legend([handles[i] for i in keep], [labels[i] for i in keep], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, title="≥ 0.5% of frame",
              title_fontsize=8)
    fig.subplots_adjust(left=0.07, right=0.82, top=0.88, bottom=0.15)
    return _figure_png(fig)


def plot_legend(label_sets: Sequence[LabelSet]) -> bytes:
    """Swatches for every class of the run's label sets (one section each), as PNG bytes."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    layout = []
    for ls in label_sets:
        cols = 4 if ls.num_classes <= 40 else 6
        layout.append((ls, cols, math.ceil(ls.num_classes / cols)))
    total_rows = sum(rows + 1.5 for _, _, rows in layout)
    fig = plt.figure(figsize=(11, 0.3 * total_rows + 0.3))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98))
    ax.set_xlim(0, 1)
    ax.set_ylim(total_rows, 0)
    ax.axis("off")
    y = 0.0
    for ls, cols, rows in layout:
        ax.text(0, y + 0.7, f"label set: {ls.name} ({ls.num_classes} classes)",
                fontsize=11, fontweight="bold", va="center")
        y += 1.5
        for i, (name, color) in enumerate(zip(ls.names, ls.colors, strict=True)):
            row, col = i % rows, i // rows  # fill column by column, so ids read downwards
            x = col / cols
            ax.add_patch(Rectangle((x, y + row + 0.15), 0.03, 0.7, facecolor=_rgb(color),
                                   edgecolor="#888", linewidth=0.5))
            ax.text(x + 0.037, y + row + 0.5, f"{i}  {name}", fontsize=9, va="center")
        y += rows
    return _figure_png(fig)


