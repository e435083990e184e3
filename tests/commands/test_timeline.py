"""The drive player's pieces that need no browser: links from the page to the run's files,
the stacked bands and the event bars."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from beam_seg.commands import timeline
from beam_seg.storage import link_base


@pytest.mark.parametrize("out, page, expected", [
    ("/runs/a", "/runs/a/report/report.html", ".."),
    ("/runs/a", "/tmp/elsewhere/summary.html", "../../runs/a"),
    ("gs://bucket/runs/a", "gs://bucket/runs/a/report/report.html", ".."),
    ("gs://bucket/runs/a", "/tmp/report.html", None),  # no relative URL leads into a bucket
    ("gs://bucket/runs/a", "s3://other/report.html", None),
])
def test_link_base(out, page, expected):
    assert link_base(out, page) == expected


def test_url_join_quotes_each_part():
    assert timeline.url_join("..", "videos/a b#1.mp4") == "../videos/a%20b%231.mp4"
    assert timeline.url_join(".", "overlays/x/000001.jpg") == "overlays/x/000001.jpg"
    assert timeline.url_join("../../runs/a", "videos/x.mp4") == "../../runs/a/videos/x.mp4"


def _drive(span_s=100.0, step_s=0.04, events=()):
    lane = timeline.Lane("car", (0, 0, 142), list(events))
    return timeline.Drive("x", "x", None, 0.0, span_s, step_s, np.array([0.0, 50.0]),
                          [], [lane]), lane


def _event(start_s, end_s):
    return {"start_s": start_s, "end_s": end_s, "frames": 1, "peak_coverage": 0.1,
            "mean_coverage": 0.1, "peak_count": None}


def test_events_closer_than_a_pixel_share_a_bar():
    # 0.1 s apart in a 100 s video (1/1000 of it is 0.1 s): merged; 10 s apart: separate
    close = [_event(10.0, 10.5), _event(10.6, 11.0), _event(11.04, 12.0)]
    far = [_event(30.0, 31.0)]
    drive, lane = _drive(events=[*close, *far])
    bars = timeline._bars(drive, lane.events)
    assert [len(b) for b in bars] == [3, 1]
    page = timeline.drive_html(drive)
    assert page.count('class="ev"') == 2
    assert "car: 3 events, 10.00–12.00 s" in page
    assert "left:10.000%" in page and "left:30.000%" in page


def test_small_classes_are_drawn_together_as_other():
    times = np.arange(4.0)
    fractions = {"frac_road": np.full(4, 0.6), "frac_sky": np.full(4, 0.396),
                 "frac_pole": np.full(4, 0.003), "frac_sign": np.full(4, 0.001)}
    names = [(c, c[5:], (i, i, i)) for i, c in enumerate(fractions)]
    bands = timeline.bands_for(times, fractions, names)
    assert [b.name for b in bands] == ["road", "sky", "other"]
    assert np.allclose(sum(b.values for b in bands), 1.0)
    assert np.allclose(bands[-1].values, 0.004)


def test_a_video_without_its_mp4_gets_a_note_not_a_player():
    drive, _ = _drive()
    page = timeline.drive_html(drive)
    assert "<video" not in page and "No segmented video" in page


def test_the_road_ahead_is_a_line_over_the_area_skipping_buckets_without_a_value():
    times = np.array([0.0, 1.0, 2.0, 3.0])
    drive = timeline.Drive("x", "x", None, 0.0, 4.0, 1.0, times,
                           [timeline.Band("road", (128, 64, 128), np.full(4, 0.5))], [],
                           road_ahead=np.array([1.0, 0.25, np.nan, 0.5]))
    page = timeline.drive_html(drive)
    points = re.findall(r'<polyline class="ahead" points="([^"]*)"', page)
    assert points == ["0.0,0.0 250.0,75.0 1000.0,50.0"]  # y = 100 * (1 - share); x to the ends
    assert "road ahead" in page
    without = timeline.drive_html(dataclasses.replace(drive, road_ahead=None))
    assert "polyline" not in without and "road ahead" not in without
