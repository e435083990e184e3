"""The report's timeline shows flicker over time when the coverage table has it."""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from beam_seg.commands import timeline


def test_flicker_is_a_red_line_scaled_to_its_top_and_absent_without_values():
    times = np.array([0.0, 1.0, 2.0])
    drive = timeline.Drive("x", "x", None, 0.0, 3.0, 1.0, times,
                           [timeline.Band("road", (128, 64, 128), np.full(3, 1.0))], [],
                           flicker=np.array([0.0, timeline.FLICKER_TOP / 2, np.nan]))
    page = timeline.drive_html(drive)
    points = re.findall(r'<polyline class="flicker" points="([^"]*)"', page)
    assert len(points) == 1
    ys = [float(p.split(",")[1]) for p in points[0].split()]
    assert ys == [timeline.HEIGHT, timeline.HEIGHT / 2]  # the NaN bucket is skipped
    assert "flicker (labels changed" in page
    without = timeline.drive_html(dataclasses.replace(drive, flicker=None))
    assert 'class="flicker"' not in without and "flicker (" not in without
