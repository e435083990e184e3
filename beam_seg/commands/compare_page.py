"""The two-run page of `beam-seg report OUT_A OUT_B`: one HTML file, no server.

Like the one-run page (`page.py`, whose styles it shares): tables and overlay thumbnails are
embedded, videos and full-size overlays are linked by relative URLs. Each input in both runs
shows run A on the left and run B on the right; the two videos of an input play, pause and
seek together (a few hand-written lines, `PAIR_JS`).
"""

from __future__ import annotations

import html
from datetime import datetime, timezone

from beam_seg import storage
from beam_seg.commands import compare, timeline
from beam_seg.commands.compare import Compared, Comparison, RunInfo, RunSide, confidence_text
from beam_seg.commands.page import PAGE_CSS, bar, data_uri, html_table, swatch, warning_html
from beam_seg.commands.queries import top_classes
from beam_seg.commands.terminal import format_duration, percent

COMPARE_CSS = """
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; margin-bottom: 22px; }
.pair figure { margin: 0; }
.pair img, .pair video { width: 100%; height: auto; display: block; border-radius: 3px;
                         background: #000; }
.side { font-size: 12px; color: #444; margin-top: 3px; }
.run { font-weight: 600; color: #222; }
"""

# The two videos of a pair follow each other: play, pause and seek (muted, so autoplay is allowed).
PAIR_JS = """
(function () {
  "use strict";
  document.querySelectorAll(".pair").forEach(function (pair) {
    var videos = pair.querySelectorAll("video");
    if (videos.length !== 2) { return; }
    [[videos[0], videos[1]], [videos[1], videos[0]]].forEach(function (ab) {
      var a = ab[0], b = ab[1];
      a.addEventListener("play", function () {
        if (b.paused) { b.currentTime = a.currentTime; b.play().catch(function () {}); }
      });
      a.addEventListener("pause", function () { if (!b.paused) { b.pause(); } });
      a.addEventListener("seeked", function () {
        if (Math.abs(b.currentTime - a.currentTime) > 0.05) { b.currentTime = a.currentTime; }
      });
    });
  });
})();
"""


def _runs_table(comparison: Comparison) -> str:
    esc = html.escape
    rows = [[f'<span class="run">{name}</span>', f"<code>{esc(run.out)}</code>",
             esc(", ".join(run.models)), str(run.inputs), confidence_text(run.mean_confidence)]
            for name, run in zip("AB", comparison.runs, strict=True)]
    return html_table(["run", "output", "model", "inputs", "mean confidence (inputs in both)"],
                      rows, ["", "", "", "num", "num"])


def _mix_table(a: RunInfo, b: RunInfo) -> str:
    esc = html.escape
    names = sorted(set(a.class_mix) | set(b.class_mix),
                   key=lambda n: -max(a.class_mix.get(n, (0.0,))[0], b.class_mix.get(n, (0.0,))[0]))
    top = max([v[0] for v in (*a.class_mix.values(), *b.class_mix.values())], default=1.0)
    rows = []
    for name in names:
        share_a, color = a.class_mix.get(name, (0.0, None))
        share_b, color_b = b.class_mix.get(name, (0.0, None))
        color = color or color_b
        rows.append([swatch(color) + esc(name), esc(percent(share_a)), bar(share_a / top, color),
                     esc(percent(share_b)), bar(share_b / top, color)])
    return html_table(["class", "A", "", "B", ""], rows, ["", "num", "", "num", ""])


def _side_html(name: str, side: RunSide, item: Compared, base: str | None) -> str:
    esc = html.escape
    if side.video_url is not None:
        picture = (f'<video controls muted preload="metadata" src="{esc(side.video_url)}" '
                   f'title="run {name}: {esc(item.input_id)}"></video>')
    elif side.overlay_jpeg is not None:
        picture = f'<img alt="run {name}: overlay of {esc(item.input_id)}" ' \
                  f'src="{data_uri(side.overlay_jpeg, "image/jpeg")}">'
        if base is not None and side.overlay_uri:
            href = timeline.url_join(base, side.overlay_uri)
            picture = (f'<a class="full" href="{esc(href)}" data-caption="run {name}: '
                       f'{esc(item.input_id)}" title="open at full size">{picture}</a>')
    else:
        picture = '<p class="note">(no overlay to show)</p>'
    top = ", ".join(f'<span class="nw">{esc(n)} {esc(percent(v))}</span>'
                    for n, v in top_classes(side.means, side.label_set))
    return (f'<figure>{picture}<figcaption class="side"><span class="run">{name}</span> '
            f"{esc(side.model)} &middot; confidence {confidence_text(side.confidence)} &middot; "
            f"{top}</figcaption></figure>")


def _input_html(item: Compared, runs: tuple[RunInfo, RunInfo]) -> str:
    esc = html.escape
    what = (f"video, {item.sides[0].frames} frames, {format_duration(item.duration_s)}"
            if item.kind == "video" else "image")
    head = f'<h3 title="{esc(item.source_uri)}">{esc(item.input_id)} <span class="note">{what}</span></h3>'
    sides = "".join(_side_html(name, side, item, run.link_base)
                    for name, side, run in zip("AB", item.sides, runs, strict=True))
    return f'{head}<div class="pair">{sides}</div>'


def compare_html(comparison: Comparison) -> str:
    """The whole comparison as one HTML page."""
    esc = html.escape
    a, b = comparison.runs
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>beam_seg: {esc(a.out)} and {esc(b.out)}</title>"
        f"<style>{PAGE_CSS}{timeline.PLAYER_CSS}{COMPARE_CSS}</style></head><body>",
        "<h1>beam_seg: two runs side by side</h1>",
        f'<p class="meta">{comparison.common} inputs in both runs &middot; generated '
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}</p>",
        _runs_table(comparison),
        *(warning_html([f"{name}: {line}" for line in run.warnings])
          for name, run in zip("AB", comparison.runs, strict=True)),
    ]
    if not comparison.common:
        parts.append('<p class="note">The runs have no input in common: compare runs of the same '
                     "files (inputs are matched by their path).</p>")
    else:
        parts += ["<h2>Class mix of the inputs in both runs</h2>",
                  '<p class="note">Mean share of the frame, over the inputs in both runs (each '
                  "input counts once).</p>", _mix_table(a, b),
                  "<h2>Inputs</h2>",
                  '<p class="note">Run A on the left, run B on the right: the overlay of each image '
                  "(click for full size), or both segmented videos, which play together. "
                  "Confidence: the mean top-class probability over the input's frames.</p>"]
        parts += [_input_html(item, comparison.runs) for item in comparison.inputs]
        if comparison.common > len(comparison.inputs):
            parts.append(f'<p class="note">&hellip; and {comparison.common - len(comparison.inputs)} '
                         "more inputs in both runs.</p>")
    parts += [timeline.FULL_SIZE_DIALOG, f"<script>{timeline.PLAYER_JS}{PAIR_JS}</script>",
              "</body></html>"]
    return "\n".join(parts)


def build_comparison(out_a: str, out_b: str, html_path: str | None = None) -> tuple[str, str]:
    """Write the two-run page (default OUT_A/report/compare.html); return the terminal text
    and the page's path."""
    html_path = html_path or storage.join(out_a, "report", "compare.html")
    comparison = compare.compare_runs(out_a, out_b, html_path)
    storage.write_bytes(html_path, compare_html(comparison).encode("utf-8"))
    return compare.terminal_comparison(comparison), html_path
