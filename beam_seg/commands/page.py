"""The HTML report: one page that opens from a folder with no server.

Tables, the class mix, the legend and the overlay thumbnails are embedded (data: URIs);
each video gets a player (`timeline.py`) whose `<video>` and full-size overlay links point
at the run's own files by relative URLs, so the page works wherever OUT/ is opened or
copied whole. The only script is the player's few hand-written lines.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from beam_seg.commands import timeline
from beam_seg.commands.queries import MAX_THUMBNAILS, ClassMix, InputSummary, Thumbnail, top_classes
from beam_seg.commands.table import class_color, class_name, fraction_columns
from beam_seg.commands.terminal import input_table_rows, percent
from beam_seg.tables.coverage import IGNORE_COLUMN

PAGE_CSS = """
body { font: 14px/1.45 -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif;
       color: #222; margin: 0 auto; max-width: 1160px; padding: 16px 24px 48px; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: #555; margin: 0 0 8px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12.5px; }
th, td { padding: 4px 6px; border-bottom: 1px solid #e6e6e6; white-space: nowrap; }
td.wrap { white-space: normal; }
.nw { white-space: nowrap; }
table.failures td:last-child { white-space: normal; overflow-wrap: anywhere; }
.bar { display: inline-block; height: 10px; vertical-align: -1px; border-radius: 2px; }
th { background: #f4f4f4; text-align: left; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
.sw { display: inline-block; width: 11px; height: 11px; border: 1px solid #999;
      vertical-align: -1px; margin-right: 5px; }
img.plot { max-width: 100%; height: auto; display: block; }
figure { margin: 0 0 18px; }
.thumbs { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; }
.thumbs figure { margin: 0; }
.thumbs img { width: 100%; height: auto; display: block; border-radius: 3px; }
figcaption { font-size: 12px; color: #555; overflow-wrap: anywhere; margin-top: 3px; }
.note { color: #666; font-size: 12px; }
.warn { background: #fff4e5; border-left: 4px solid #e08a00; padding: 6px 10px; margin: 8px 0; }
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def swatch(color: tuple[int, int, int]) -> str:
    return f'<span class="sw" style="background:#{color[0]:02x}{color[1]:02x}{color[2]:02x}"></span>'


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], styles: Sequence[str]) -> str:
    """Cells are HTML already (callers escape text); `styles` are per-column CSS classes."""
    def cls(style: str) -> str:
        return f' class="{style}"' if style else ""

    head = "".join(f"<th{cls(st)}>{h}</th>" for h, st in zip(headers, styles, strict=True))
    body = "".join("<tr>" + "".join(f"<td{cls(st)}>{c}</td>" for c, st in zip(row, styles, strict=True))
                   + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def bar(value: float, color: tuple[int, int, int], full_width_px: int = 160) -> str:
    width = max(1, round(value * full_width_px))
    return (f'<span class="bar" style="width:{width}px;'
            f'background:#{color[0]:02x}{color[1]:02x}{color[2]:02x}"></span>')


def _inputs_section(inputs: Sequence[InputSummary], mix: ClassMix) -> str:
    esc = html.escape
    headers, rows = input_table_rows(inputs, mix)
    main = mix.main_columns()
    head = [esc(headers[0]), "kind", "frames", "duration", "size",
            *[swatch(class_color(mix.label_set, c)) + esc(class_name(mix.label_set, c)) for c in main],
            "top classes"]
    by_id = {s.input_id: s for s in inputs}
    body = []
    for row in rows:
        summary = by_id[row[0]]
        top = ", ".join(f'<span class="nw">{esc(name)} {esc(percent(v))}</span>'
                        for name, v in top_classes(summary.means, mix.label_set))
        body.append([f'<span title="{esc(summary.source_uri)}">{esc(row[0])}</span>',
                     *[esc(c) for c in row[1:-1]], top])
    styles = ["", "", "num", "num", "num", *["num"] * len(main), "wrap"]
    return html_table(head, body, styles)


def _class_mix_section(mix: ClassMix) -> str:
    esc = html.escape
    columns = sorted((c for c in [*fraction_columns(mix.label_set), IGNORE_COLUMN]
                      if mix.mean.get(c, 0.0) > 0), key=lambda c: -mix.mean[c])
    top = max((mix.mean[c] for c in columns), default=1.0)
    body = [[swatch(class_color(mix.label_set, c)) + esc(class_name(mix.label_set, c)),
             esc(percent(mix.mean[c])), bar(mix.mean[c] / top, class_color(mix.label_set, c)),
             esc(percent(mix.frames_over_1pct.get(c)))] for c in columns]
    return html_table(["class", "mean share", "", "frames &gt; 1%"], body, ["", "num", "", "num"])


@dataclass(frozen=True)
class PageContent:
    """Everything the page shows, gathered by `report.build_report`."""

    out: str
    inputs: Sequence[InputSummary]
    total_inputs: int
    models: Sequence[str]
    mixes: Sequence[ClassMix]
    drives: Sequence[timeline.Drive]
    skipped_drives: int
    legend_png: bytes
    thumbnails: Sequence[Thumbnail]
    link_base: str | None  # relative URL of OUT seen from the page; None: files not reachable
    warnings: Sequence[str] = ()  # the out-of-domain warning's lines (`domain.py`)
    failures: Sequence[tuple[str, str, str]] = ()  # (input id, source, cause) of failed inputs


def warning_html(lines: Sequence[str]) -> str:
    """The out-of-domain warning as a box; nothing when there is none."""
    if not lines:
        return ""
    return '<div class="warn">' + "<br>".join(html.escape(line) for line in lines) + "</div>"


def failures_html(failures: Sequence[tuple[str, str, str]]) -> str:
    """The inputs the run could not finish, with the cause of each; nothing when none failed."""
    if not failures:
        return ""
    esc = html.escape
    rows = "".join(f'<tr><td title="{esc(source)}">{esc(iid)}</td><td>{esc(reason)}</td></tr>'
                   for iid, source, reason in failures)
    return ("<h2>Failed inputs</h2>"
            f'<p class="note">{len(failures)} input{"" if len(failures) == 1 else "s"} could not be '
            "finished; each one's error records are in <code>OUT/errors/&lt;input&gt;.jsonl</code>, "
            "and a re-run of the same command tries them again. Hover an input for its source.</p>"
            f'<table class="failures"><tr><th>input</th><th>cause</th></tr>{rows}</table>')


def _thumbnail(t: Thumbnail, link_base: str | None) -> str:
    esc = html.escape
    where = f"frame {t.frame_index} at {t.timestamp_s:.2f} s" if t.kind == "video" else "image"
    caption = f"{t.input_id} · {where}"
    image = f'<img alt="overlay of {esc(t.input_id)}" src="{data_uri(t.jpeg, "image/jpeg")}">'
    if link_base is not None:
        href = timeline.url_join(link_base, t.overlay_uri)
        image = (f'<a class="full" href="{esc(href)}" data-caption="{esc(caption)}" '
                 f'title="open at full size">{image}</a>')
    return f"<figure>{image}<figcaption>{esc(caption)}</figcaption></figure>"


def html_report(page: PageContent) -> str:
    """The whole report as one HTML page."""
    esc = html.escape
    frames = sum(m.frames for m in page.mixes)
    several = len(page.mixes) > 1
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>beam_seg report: {esc(page.out)}</title>"
        f"<style>{PAGE_CSS}{timeline.PLAYER_CSS}</style></head><body>",
        "<h1>beam_seg report</h1>",
        f'<p class="meta"><code>{esc(page.out)}</code> &middot; {page.total_inputs} inputs &middot; '
        + (f"{len(page.failures)} failed &middot; " if page.failures else "")
        + f"{frames} frames &middot; model {esc(', '.join(page.models))} &middot; generated "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}</p>",
        warning_html(page.warnings),
        failures_html(page.failures),
        "<h2>Inputs</h2>",
        '<p class="note">Class columns: mean share of the frame over the input\'s frames, for the '
        "classes that cover most of the run. Duration: the time the video's frames span. "
        "Hover an input for its source.</p>",
    ]
    for mix in page.mixes:
        if several:
            parts.append(f"<h3>label set {esc(mix.label_set.name)}</h3>")
        parts.append(_inputs_section(page.inputs, mix))
    if page.total_inputs > len(page.inputs):
        parts.append(f'<p class="note">&hellip; and {page.total_inputs - len(page.inputs)} more '
                     f"inputs (the first {len(page.inputs)} are listed).</p>")

    parts.append("<h2>Class mix of the run</h2>")
    parts.append('<p class="note">Mean share: the average over inputs of each input\'s mean '
                 "coverage (each input counts once). Frames &gt; 1%: the share of all frames in "
                 "which the class covers more than 1% of the picture.</p>")
    for mix in page.mixes:
        if several:
            parts.append(f"<h3>label set {esc(mix.label_set.name)}</h3>")
        parts.append(_class_mix_section(mix))

    if page.drives:
        parts.append("<h2>Drives</h2>")
        parts.append('<p class="note">Each video beside its timeline: the class coverage over time '
                     "(stacked, in the label colours) and one lane per class with events "
                     "(<code>OUT/events/</code>; hover one for its figures). Click the timeline "
                     "to seek; the red cursor follows playback.</p>")
        parts += [timeline.drive_html(d) for d in page.drives]
        if page.skipped_drives:
            parts.append(f'<p class="note">{page.skipped_drives} more videos are not shown '
                         "(raise --max-plots).</p>")
    parts.append("<h2>Label colours</h2>")
    parts.append(f'<img class="plot" alt="label colours" src="{data_uri(page.legend_png, "image/png")}">')
    if page.thumbnails:
        parts.append("<h2>Overlays</h2>")
        parts.append(f'<p class="note">The middle frame of each input (at most {MAX_THUMBNAILS}, '
                     "videos first); click one to open it at full size.</p>"
                     '<div class="thumbs">')
        parts += [_thumbnail(t, page.link_base) for t in page.thumbnails]
        parts.append("</div>")
    parts.append(timeline.FULL_SIZE_DIALOG)
    parts.append(f"<script>{timeline.PLAYER_JS}</script>")
    parts.append("</body></html>")
    return "\n".join(parts)
