"""Per-stream metadata, edit lists, seeks past long B-frame delays, and ffmpeg children that
stall or overrun: what a video's plan promises is what ffmpeg decodes (no Beam here)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from beam_seg.media import ffmpeg, video

from conftest import decode_all, make_index_video, read_index


def _ffmpeg(*args: str) -> None:
    subprocess.run([video.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def _decoded_count(path) -> int:
    """Frames ffmpeg itself decodes from the first video stream, counted by ffmpeg."""
    out = subprocess.run([video.ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:V:0",
                          "-f", "framecrc", "-"], capture_output=True, check=True).stdout.decode()
    return sum(1 for line in out.splitlines() if line and not line.startswith("#"))


def _segment_indices(path, info, frames_per_segment: int) -> list[int]:
    seen = []
    for seg in video.plan_segments(info, frames_per_segment):
        frames = list(video.decode_frames(str(path), info, seg))
        assert len(frames) == seg.count, seg
        seen += [read_index(f) for f in frames]
    return seen


def test_rotation_of_another_stream_is_not_applied_to_the_decoded_one(tmp_path):
    """Stream 1 carries display_rotation 90; stream 0 (the one decoded) has none."""
    clip = make_index_video(tmp_path / "clip.mp4", 12, width=160, height=96)
    two = tmp_path / "two.mp4"
    _ffmpeg("-i", str(clip), "-display_rotation", "90", "-i", str(clip),
            "-map", "0:v", "-map", "1:v", "-c", "copy", str(two))
    info = video.probe(str(two))
    assert (info.width, info.height, info.rotation) == (160, 96, 0)
    frames = list(video.decode_frames(str(two), info, video.plan_segments(info, 12)[0]))
    assert [f.shape for f in frames] == [(96, 160, 3)] * 12
    assert [read_index(f) for f in frames] == list(range(12))  # not stripes of a reshaped frame


def test_rotation_of_the_decoded_stream_still_applies_with_two_streams(tmp_path):
    clip = make_index_video(tmp_path / "clip.mp4", 6, width=160, height=96)
    two = tmp_path / "two.mp4"
    _ffmpeg("-display_rotation", "90", "-i", str(clip), "-i", str(clip),
            "-map", "0:v", "-map", "1:v", "-c", "copy", str(two))
    info = video.probe(str(two))
    assert (info.width, info.height, info.rotation) == (96, 160, 90)
    frames = list(video.decode_frames(str(two), info, video.plan_segments(info, 6)[0]))
    assert [f.shape for f in frames] == [(160, 96, 3)] * 6


@pytest.mark.parametrize("start", ["0.5", "0.9", "1.3"])
def test_a_stream_copy_trim_plans_the_frames_ffmpeg_decodes(tmp_path, start):
    """`-ss T -c copy` keeps packets from the keyframe before T and an edit list that hides
    them: they must not be planned, and every segment must still be frame-exact."""
    clip = make_index_video(tmp_path / "clip.mp4", 60)  # B-frames, a keyframe every 12
    cut = tmp_path / "cut.mp4"
    _ffmpeg("-ss", start, "-i", str(clip), "-c", "copy", str(cut))
    info = video.probe(str(cut))
    decoded = decode_all(cut)
    assert info.frame_count == _decoded_count(cut) == len(decoded) < 60
    first = read_index(decoded[0])
    assert [read_index(f) for f in decoded] == list(range(first, 60))
    assert _segment_indices(cut, info, 7) == list(range(first, 60))
    assert video.count_frames(str(cut)) == info.frame_count


@pytest.mark.parametrize("vfr", [False, True], ids=["8fps", "vfr"])
def test_segments_are_exact_when_b_frames_show_long_after_they_decode(tmp_path, vfr):
    """With long variable gaps a B-frame is shown more than the 3/23 s ffmpeg seeks ahead
    for: a seek by the midpoint alone lost frames 43 and 55 of the VFR clip (segments
    starting there began one frame late). 8 frames/s CFR is the same delay, kept exact."""
    path = make_index_video(tmp_path / "slow.mp4", 60, fps="8" if not vfr else "25", vfr=vfr)
    info = video.probe(str(path))
    assert info.reorder_s > 3 / 23
    for frames_per_segment in (1, 5, 7):
        assert _segment_indices(path, info, frames_per_segment) == list(range(60)), frames_per_segment


@pytest.mark.serial  # seconds-long stall bounds
def test_a_stalled_decoder_is_killed_with_a_reason(tmp_path):
    """A named pipe nobody writes to: ffmpeg waits on it for ever, the watchdog does not."""
    fifo = tmp_path / "stalled.mp4"
    os.mkfifo(fifo)
    info = video.VideoInfo(width=16, height=16, frame_count=5, fps=Fraction(25), duration_s=0.2)
    seg = video.Segment(0, 0, 5, 0.0, (0.0,) * 5)
    started = time.monotonic()
    with pytest.raises(video.VideoError, match="decoder stalled"):
        list(video.decode_frames(str(fifo), info, seg, stall_timeout_s=1.0))
    assert time.monotonic() - started < 10


@pytest.mark.serial  # seconds-long stall bounds
def test_a_stalled_encoder_is_killed_with_a_reason(tmp_path):
    """An encoder whose output is a named pipe nobody reads blocks its input: killed."""
    fifo = tmp_path / "out.mp4"
    os.mkfifo(fifo)
    frame = np.zeros((192, 320, 3), np.uint8)
    started = time.monotonic()
    writer = video.VideoWriter(str(fifo), 320, 192, Fraction(25), stall_timeout_s=1.0)
    with pytest.raises(video.VideoError, match="encoder stalled"), writer:
        for _ in range(200):
            writer.write(frame)
    assert time.monotonic() - started < 15


def test_an_ffmpeg_run_past_its_time_limit_is_a_video_error():
    with pytest.raises(video.VideoError, match="did not finish within"):
        ffmpeg.run(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "null", "-"], timeout=0.5)


@pytest.mark.serial  # seconds-long stall bounds
def test_a_run_to_completion_that_stops_progressing_is_killed_with_a_reason(tmp_path):
    """Packet listings and concats run to completion: a stuck one (its input a named pipe
    nobody writes to) is killed once its progress reports stop, long before its time limit."""
    fifo = tmp_path / "stuck.mp4"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(video.VideoError, match="stalled: no progress for 1 s"):
        ffmpeg.run([*ffmpeg.input_args(str(fifo)), "-c", "copy", "-f", "framecrc", "-"],
                   timeout=600, stall_s=1.0)
    assert time.monotonic() - started < 10


@pytest.mark.serial  # seconds-long stall bounds
def test_a_long_run_that_keeps_progressing_is_not_a_stall():
    """Three seconds of work under a one-second stall bound: reports keep it alive."""
    proc = ffmpeg.run(["-re", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=3",
                       "-f", "framecrc", "-"], timeout=60, stall_s=1.0)
    assert proc.returncode == 0
    assert proc.stdout.count(b"\n0,") == 75  # every frame listed on stdout, none lost


@pytest.mark.serial  # seconds-long stall bounds
def test_watchdog_never_fires_while_disarmed():
    """Time between frames (the model working) is not a stall."""
    proc = subprocess.Popen(["sleep", "5"])
    dog = ffmpeg.Watchdog(proc, 0.3, "decoder")
    try:
        time.sleep(1.0)
        assert proc.poll() is None and not dog.fired
        with dog:
            threading.Event().wait(1.0)
        assert dog.fired and proc.wait(timeout=5) != 0
    finally:
        dog.stop()
        proc.kill()
        proc.wait()
