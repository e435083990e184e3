"""The report's drive player: a video's segmented mp4 beside its coverage and event timeline.

The timeline is plain HTML and one inline SVG, drawn here in Python: a stacked area of
the classes' coverage (time buckets averaged in SQL) and one lane per class with events.
About forty lines of hand-written JavaScript (`PLAYER_JS`) tie it to the `<video>`:
a click on the timeline seeks the video, and playback moves a cursor over it. Nothing is
fetched, so the page works opened from a folder; the video is linked by a relative path.
"""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

OTHER_COLOR = (190, 190, 190)
MIN_BAND_SHARE = 0.005  # classes below this mean share are drawn together as "other"
MAX_LANES = 12  # event lanes per video (the classes with the most event time)
WIDTH = 1000  # SVG user units across the timeline (stretched to the page width)
HEIGHT = 100


@dataclass(frozen=True)
class Band:
    name: str
    color: tuple[int, int, int]
    values: np.ndarray  # coverage per time bucket


@dataclass(frozen=True)
class Lane:
    name: str
    color: tuple[int, int, int]
    events: list[dict]  # rows of the events table


@dataclass(frozen=True)
class Drive:
    """What the player of one video shows."""

    input_id: str
    title: str
    video_src: str | None  # relative URL of the segmented mp4; None when there is none
    t0: float  # timestamp_s of the video's first frame (its time 0)
    span_s: float  # the video's duration
    step_s: float  # time between two frames of the table
    times_s: np.ndarray  # bucket times
    bands: list[Band]  # bottom of the stack first
    lanes: list[Lane]
    road_ahead: np.ndarray | None = None  # roi_road per bucket, drawn as a line over the area
    flicker: np.ndarray | None = None  # flicker per bucket, a red line (top of the area = 20%)


def url_join(base: str, relative_path: str) -> str:
    """A relative URL from the page to a file of the run (`../videos/x.mp4`), each part quoted."""
    parts = [p for p in base.split("/") if p and p != "."] + relative_path.split("/")
    return "/".join(urllib.parse.quote(p) for p in parts) or "."


def hex_color(color: tuple[int, int, int]) -> str:
    return f"#{color[0]:02x}{color[1]:02x}{color[2]:02x}"


def _area_svg(drive: Drive) -> str:
    """Stacked coverage as one filled polygon per band: band k covers 0 .. the sum of bands
    0..k, drawn top of the stack first so that each lower band paints over its share."""
    times = drive.times_s
    if len(times) == 0:
        return ""
    x = np.clip((times - drive.t0) / drive.span_s * WIDTH, 0, WIDTH)
    if len(times) == 1:  # one bucket: a flat band across
        x = np.array([0.0, WIDTH])
    x[0], x[-1] = 0.0, WIDTH  # the buckets' mean times, stretched to the video's ends
    cumulative = np.zeros(len(times))
    tops = []
    for band in drive.bands:
        values = band.values if len(times) > 1 else band.values[:1]
        cumulative = cumulative + np.nan_to_num(values)
        tops.append(np.repeat(cumulative, 2) if len(times) == 1 else cumulative.copy())
    polygons = []
    for band, top in reversed(list(zip(drive.bands, tops, strict=True))):
        y = HEIGHT * (1 - np.clip(top, 0, 1))
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y, strict=True))
        polygons.append(f'<polygon fill="{hex_color(band.color)}" points="{x[0]:.1f},{HEIGHT} '
                        f'{points} {x[-1]:.1f},{HEIGHT}"><title>{html.escape(band.name)}</title>'
                        "</polygon>")
    return (f'<svg class="area" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" '
            f'role="img" aria-label="class coverage over time">{"".join(polygons)}'
            f"{_road_ahead_svg(drive, x)}{_flicker_svg(drive, x)}</svg>")


FLICKER_TOP = 0.2  # flicker drawn at the top of the coverage area


def _flicker_svg(drive: Drive, x: np.ndarray) -> str:
    """The share of labels that change beyond the motion, as a red line (0 at the bottom,
    FLICKER_TOP at the top): where the labels of a video are least stable."""
    if drive.flicker is None or len(drive.flicker) != len(drive.times_s) or len(x) < 2:
        return ""
    y = HEIGHT * (1 - np.clip(drive.flicker / FLICKER_TOP, 0, 1))
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y, strict=True) if not np.isnan(b))
    return (f'<polyline class="flicker" points="{points}" vector-effect="non-scaling-stroke">'
            "<title>flicker: share of pixels whose label changed beyond the motion</title></polyline>")


def _road_ahead_svg(drive: Drive, x: np.ndarray) -> str:
    """roi_road as a white line (on a dark one, to show on every colour); a bucket without a
    value (frames of another label set) is skipped."""
    if drive.road_ahead is None or len(drive.road_ahead) != len(drive.times_s) or len(x) < 2:
        return ""
    y = HEIGHT * (1 - np.clip(drive.road_ahead, 0, 1))
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y, strict=True) if not np.isnan(b))
    lines = [f'<polyline class="{cls}" points="{points}" vector-effect="non-scaling-stroke">'
             "<title>road ahead: share of the region ahead (--roi) that is road</title></polyline>"
             for cls in ("ahead-under", "ahead")]
    return "".join(lines)


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def _event_title(lane: Lane, event: dict) -> str:
    text = (f"{lane.name}: {event['start_s']:.2f}–{event['end_s']:.2f} s, {event['frames']} frames, "
            f"peak {_percent(event['peak_coverage'])}, mean {_percent(event['mean_coverage'])}")
    if event.get("peak_count") is not None:
        text += f", up to {event['peak_count']} blobs"
    return text


def _bars(drive: Drive, events: Sequence[dict]) -> list[list[dict]]:
    """Events grouped into the bars drawn for them: events less than one SVG unit apart
    (1/1000 of the video) share a bar, so a long drive with thousands of short events
    still makes a small page."""
    gap = drive.span_s / WIDTH
    bars: list[list[dict]] = []
    for event in sorted(events, key=lambda e: e["start_s"]):
        if bars and event["start_s"] - (bars[-1][-1]["end_s"] + drive.step_s) < gap:
            bars[-1].append(event)
        else:
            bars.append([event])
    return bars


def _lane_html(drive: Drive, lane: Lane) -> str:
    marks = []
    for bar in _bars(drive, lane.events):
        first, last = bar[0], bar[-1]
        left = (first["start_s"] - drive.t0) / drive.span_s
        width = (last["end_s"] - first["start_s"] + drive.step_s) / drive.span_s
        title = (_event_title(lane, first) if len(bar) == 1 else
                 f"{lane.name}: {len(bar)} events, {first['start_s']:.2f}–{last['end_s']:.2f} s")
        marks.append(f'<span class="ev" style="left:{100 * left:.3f}%;width:{100 * width:.3f}%;'
                     f'background:{hex_color(lane.color)}" title="{html.escape(title)}"></span>')
    return f'<div class="lane">{"".join(marks)}</div>'


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{secs:04.1f}"


def drive_html(drive: Drive) -> str:
    """One video's player section."""
    esc = html.escape
    if drive.video_src:
        video = (f'<video controls muted preload="metadata" playsinline '
                 f'src="{esc(drive.video_src)}"></video>')
    else:
        video = '<p class="note">No segmented video in this output (the input failed or is unfinished).</p>'
    labels = ['<div class="lab area-lab">coverage</div>',
              *[f'<div class="lab"><span class="sw" style="background:{hex_color(lane.color)}">'
                f"</span>{esc(lane.name)}</div>" for lane in drive.lanes]]
    lanes = "".join(_lane_html(drive, lane) for lane in drive.lanes)
    legend = " ".join(f'<span class="nw"><span class="sw" style="background:{hex_color(b.color)}">'
                      f"</span>{esc(b.name)}</span>" for b in reversed(drive.bands))
    if drive.road_ahead is not None:
        legend += (' <span class="nw"><span class="line"></span>road ahead (share of the '
                   "region ahead that is road)</span>")
    if drive.flicker is not None:
        legend += (' <span class="nw"><span class="line flicker"></span>flicker (labels changed '
                   f"beyond the motion; top = {FLICKER_TOP:.0%})</span>")
    no_events = "" if drive.lanes else '<p class="note">No events in this video.</p>'
    return (
        f'<section class="drive" id="drive-{esc(drive.input_id)}" data-span="{drive.span_s:.6f}">'
        f"<h3>{esc(drive.title)}</h3>"
        f'<div class="player"><div class="screen">{video}</div>'
        f'<div class="timeline"><div class="labels">{"".join(labels)}</div>'
        f'<div class="tracks" title="click to seek">{_area_svg(drive)}{lanes}'
        f'<div class="cursor"></div></div>'
        f'<div></div><div class="axis"><span>0:00.0</span><output class="clock">0:00.0</output>'
        f"<span>{_clock(drive.span_s)}</span></div></div></div>"
        f'<p class="legend">{legend}</p>{no_events}</section>')


PLAYER_CSS = """
.player { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
.screen { flex: 0 1 440px; min-width: 280px; }
.screen video { width: 100%; display: block; background: #000; border-radius: 3px; }
.timeline { flex: 1 1 420px; display: grid; grid-template-columns: 96px 1fr; column-gap: 6px; }
.labels .lab { height: 14px; margin-bottom: 3px; font-size: 11px; line-height: 14px;
               white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.labels .area-lab { height: 120px; line-height: 120px; margin-bottom: 6px; }
.tracks { position: relative; cursor: crosshair; }
.tracks svg.area { display: block; width: 100%; height: 120px; margin-bottom: 6px;
                   background: #f4f4f4; }
.lane { position: relative; height: 14px; margin-bottom: 3px; background: #f4f4f4; }
.ev { position: absolute; top: 1px; bottom: 1px; min-width: 2px; border-radius: 2px; }
.cursor { position: absolute; top: 0; bottom: 0; left: 0; width: 2px; margin-left: -1px;
          background: #d00; pointer-events: none; }
.axis { display: flex; justify-content: space-between; font-size: 11px; color: #555; }
.clock { font-weight: 600; color: #d00; }
.legend { font-size: 11px; color: #444; margin: 4px 0 0; }
.legend .nw { margin-right: 8px; }
.tracks polyline { fill: none; stroke-linejoin: round; }
.tracks polyline.ahead { stroke: #fff; stroke-width: 1.5px; }
.tracks polyline.ahead-under { stroke: #000; stroke-width: 3.5px; opacity: 0.45; }
.tracks polyline.flicker { stroke: #e00; stroke-width: 1.5px; }
.legend .line.flicker { background: #e00; }
.legend .line { display: inline-block; width: 16px; height: 3px; background: #fff;
                border: 1px solid #666; vertical-align: 3px; margin-right: 5px; }
a.full img { cursor: zoom-in; }
dialog#full { padding: 0; border: 0; max-width: 96vw; max-height: 96vh; background: #111; }
dialog#full img { display: block; max-width: 96vw; max-height: 90vh; }
dialog#full p { color: #eee; font-size: 12px; margin: 4px 8px; }
dialog#full::backdrop { background: rgba(0, 0, 0, 0.7); }
"""

# Hand-written, no library: seek on click, a cursor that follows playback, full-size overlays.
PLAYER_JS = """
(function () {
  "use strict";
  function clock(t) {
    var m = Math.floor(t / 60), s = t - 60 * m;
    return m + ":" + (s < 10 ? "0" : "") + s.toFixed(1);
  }
  document.querySelectorAll(".drive").forEach(function (drive) {
    var video = drive.querySelector("video");
    var tracks = drive.querySelector(".tracks");
    var cursor = drive.querySelector(".cursor");
    var readout = drive.querySelector(".clock");
    var span = parseFloat(drive.dataset.span);
    function place(t) {
      var f = Math.min(1, Math.max(0, t / span));
      cursor.style.left = (100 * f) + "%";
      readout.textContent = clock(t);
    }
    tracks.addEventListener("click", function (e) {
      var box = tracks.getBoundingClientRect();
      var t = span * Math.min(1, Math.max(0, (e.clientX - box.left) / box.width));
      if (video) { video.currentTime = t; }
      place(t);
    });
    if (!video) { return; }
    function follow() {
      place(video.currentTime);
      if (!video.paused && !video.ended) { window.requestAnimationFrame(follow); }
    }
    video.addEventListener("play", follow);
    video.addEventListener("seeked", follow);
    video.addEventListener("timeupdate", follow);
  });
  var dialog = document.getElementById("full");
  if (!dialog) { return; }
  document.querySelectorAll("a.full").forEach(function (link) {
    link.addEventListener("click", function (e) {
      e.preventDefault();
      dialog.querySelector("img").src = link.href;
      dialog.querySelector("p").textContent = link.dataset.caption || "";
      dialog.showModal();
    });
  });
  dialog.addEventListener("click", function () { dialog.close(); });
})();
"""

FULL_SIZE_DIALOG = '<dialog id="full"><img alt="overlay at full size"><p></p></dialog>'


def bands_for(times: np.ndarray, fractions: dict[str, np.ndarray],
              names: Sequence[tuple[str, str, tuple[int, int, int]]]) -> list[Band]:
    """Bands in class-id order for the classes above MIN_BAND_SHARE, the rest as "other".

    `names` holds (column, display name, colour) of every class column, in class-id order.
    """
    bands, other = [], np.zeros(len(times))
    for column, name, color in names:
        values = fractions.get(column)
        if values is None:
            continue
        if np.nanmean(values) >= MIN_BAND_SHARE:
            bands.append(Band(name, color, values))
        else:
            other = other + np.nan_to_num(values)
    if other.any():
        bands.append(Band("other", OTHER_COLOR, other))
    return bands


def lanes_for(events: Sequence[dict], names: Sequence[tuple[str, str, tuple[int, int, int]]],
              limit: int = MAX_LANES) -> list[Lane]:
    """One lane per class with events, in class-id order; at most `limit`, those with the
    most event time first when there are more."""
    by_class: dict[str, list[dict]] = {}
    for event in events:
        by_class.setdefault(event["class"], []).append(event)
    time_in = {c: sum(e["end_s"] - e["start_s"] for e in evs) for c, evs in by_class.items()}
    keep = set(sorted(by_class, key=lambda c: -time_in[c])[:limit])
    lanes = []
    for column, name, color in names:
        suffix = column.split("_", 1)[1]
        if suffix in keep:
            lanes.append(Lane(name, color, by_class[suffix]))
    return lanes
