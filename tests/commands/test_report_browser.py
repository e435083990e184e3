"""report.html in a real browser (headless Chromium): it plays the drive beside its timeline.

Fast tier: the run is made without a model, from hand-drawn label maps, through the same
functions the pipeline writes with (coverage rows with region columns, overlays, the mp4
encoder, the events file), then `beam-seg report` writes the page and Chromium opens it
from disk with no server.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

from beam_seg import cli

from browser import keep_screenshot, open_page
from conftest import ROOT
from synthetic_run import CAR_FRAMES, FPS, FRAMES, HEIGHT, WIDTH, write_still_run, write_synthetic_run

SCREENSHOT_ENV = "BEAM_SEG_SCREENSHOT"  # set to a path to keep the screenshot (docs/)
COMPARE_SCREENSHOT_ENV = "BEAM_SEG_COMPARE_SCREENSHOT"  # the same for the two-run page


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser-run")
    write_synthetic_run(out)
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["report", str(out)]) == 0
    return out / "report" / "report.html"


def _wait_for_metadata(page) -> None:
    page.wait_for_function("document.querySelector('video').readyState >= 1", timeout=20_000)


def _click_at(page, selector: str, fraction: float) -> None:
    box = page.locator(selector).first.bounding_box()
    page.mouse.click(box["x"] + fraction * box["width"], box["y"] + box["height"] / 2)
    page.wait_for_function("!document.querySelector('video').seeking", timeout=10_000)


def test_the_page_plays_the_video_beside_its_timeline(report_page, tmp_path):
    with open_page(report_page) as (page, errors):
        _wait_for_metadata(page)
        # the mp4 holds FRAMES frames at FPS: it lasts FRAMES / FPS seconds
        assert page.evaluate("document.querySelector('video').duration") == pytest.approx(
            FRAMES / FPS, abs=0.5 / FPS)
        assert page.evaluate("document.querySelector('video').currentTime") == 0
        _click_at(page, ".tracks svg.area", 0.5)
        assert page.evaluate("document.querySelector('video').currentTime") == pytest.approx(
            FRAMES / FPS / 2, abs=1 / FPS)
        cursor = page.locator(".cursor").bounding_box()
        area = page.locator(".tracks svg.area").bounding_box()
        assert cursor["x"] + cursor["width"] / 2 == pytest.approx(area["x"] + area["width"] / 2, abs=3)
        page.wait_for_function("document.querySelector('video').readyState >= 2")  # frame shown
        shot = tmp_path / "report.png"
        page.locator(".drive").first.screenshot(path=str(shot))
        assert not errors, errors
    assert shot.stat().st_size > 10_000
    if keep := os.environ.get(SCREENSHOT_ENV):
        keep_screenshot(shot, ROOT / keep)  # an absolute path stays absolute


def test_a_click_on_an_event_lands_inside_it(report_page):
    with open_page(report_page) as (page, errors):
        _wait_for_metadata(page)
        lanes = page.locator(".labels .lab").all_inner_texts()
        assert "car" in lanes  # road, sky and building are present all along; car for a while
        car_bar = page.locator(".lane").nth(lanes.index("car") - 1).locator(".ev")  # 1st is the area
        assert car_bar.count() == 1
        box = car_bar.bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_function("!document.querySelector('video').seeking", timeout=10_000)
        now = page.evaluate("document.querySelector('video').currentTime")
        assert CAR_FRAMES.start / FPS <= now <= CAR_FRAMES.stop / FPS
        assert not errors, errors


def test_playback_moves_the_cursor(report_page):
    with open_page(report_page) as (page, errors):
        _wait_for_metadata(page)
        before = page.locator(".cursor").bounding_box()["x"]
        page.evaluate("document.querySelector('video').play()")
        page.wait_for_function("document.querySelector('video').currentTime > 1.0", timeout=20_000)
        page.evaluate("document.querySelector('video').pause()")
        page.wait_for_timeout(100)  # one animation frame
        after = page.locator(".cursor").bounding_box()["x"]
        assert after > before + 20
        assert not errors, errors


def test_a_thumbnail_opens_the_overlay_at_full_size(report_page):
    with open_page(report_page) as (page, errors):
        page.locator("a.full").first.click()
        page.wait_for_function("document.getElementById('full').open")
        page.wait_for_function("document.querySelector('#full img').complete")
        size = page.evaluate("[document.querySelector('#full img').naturalWidth,"
                             " document.querySelector('#full img').naturalHeight]")
        assert size == [WIDTH, HEIGHT]  # the overlay file itself, not the 360-px thumbnail
        page.mouse.click(5, 5)
        page.wait_for_function("!document.getElementById('full').open")
        assert not errors, errors


@pytest.fixture(scope="module")
def compare_page(tmp_path_factory) -> Path:
    """Two synthetic runs of the same video and stills, by two 'models', and their page."""
    root = tmp_path_factory.mktemp("browser-compare")
    stills = ["/footage/one.jpg", "/footage/two.jpg"]
    for name, model, confidence, cars in (("a", "model-a", 0.71, 0.0), ("b", "model-b", 0.93, 0.3)):
        write_synthetic_run(root / name, model, confidence)
        write_still_run(root / name, [(uri, model, confidence) for uri in stills], car_share=cars)
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["report", str(root / "a"), str(root / "b")]) == 0
    return root / "a" / "report" / "compare.html"


def test_the_comparison_page_shows_both_runs_and_plays_their_videos_together(compare_page, tmp_path):
    with open_page(compare_page, height=1400) as (page, errors):
        page.wait_for_function("Array.from(document.querySelectorAll('video'))"
                               ".every(v => v.readyState >= 1)", timeout=20_000)
        assert page.locator(".pair").count() == 3  # the video and both stills
        for side, model, confidence in (("A", "model-a", "0.71"), ("B", "model-b", "0.93")):
            caption = page.locator(f".pair figcaption:has-text('{side} {model}')")
            assert caption.count() == 3 and caption.first.is_visible()
            assert f"confidence {confidence}" in caption.first.inner_text()
        durations = page.evaluate("Array.from(document.querySelectorAll('video')).map(v => v.duration)")
        assert durations == pytest.approx([FRAMES / FPS] * 2, abs=0.5 / FPS)
        page.evaluate("document.querySelectorAll('video')[0].play()")
        page.wait_for_function("document.querySelectorAll('video')[1].currentTime > 0.5", timeout=20_000)
        page.evaluate("document.querySelectorAll('video')[0].pause()")
        page.wait_for_function("document.querySelectorAll('video')[1].paused", timeout=5_000)
        shot = tmp_path / "compare.png"
        page.screenshot(path=str(shot), full_page=True)
        assert not errors, errors
    assert shot.stat().st_size > 10_000
    if keep := os.environ.get(COMPARE_SCREENSHOT_ENV):
        keep_screenshot(shot, ROOT / keep)
