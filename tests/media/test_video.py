"""Video probing, frame-exact segment decoding, encoding and concatenation (no Beam)."""

from __future__ import annotations

import subprocess
from fractions import Fraction

import pytest

from beam_seg.media import video

from conftest import DATA, decode_all, make_index_video, read_index


@pytest.mark.parametrize("vfr", [False, True], ids=["cfr", "vfr"])
def test_segments_decode_exactly_the_planned_frames(tmp_path, vfr):
    path = make_index_video(tmp_path / "numbered.mp4", 53, fps="30000/1001", vfr=vfr)
    info = video.probe(str(path))
    assert info.frame_count == 53
    assert info.variable_frame_rate is vfr
    seen = []
    for seg in video.plan_segments(info, 7):
        frames = list(video.decode_frames(str(path), info, seg))
        assert len(frames) == seg.count
        seen += [read_index(f) for f in frames]
    assert seen == list(range(53))


def test_probe_finds_the_video_stream_after_an_audio_stream():
    info = video.probe(str(DATA / "videos" / "udacity_solidWhiteRight.mp4"))
    assert (info.width, info.height, info.frame_count) == (960, 540, 221)
    assert info.fps == Fraction(25)
    assert info.audio_codec == "aac"


def test_probe_keeps_ntsc_rate_as_a_rational(tmp_path):
    path = make_index_video(tmp_path / "ntsc.mp4", 12, fps="30000/1001")
    assert video.probe(str(path)).fps == Fraction(30000, 1001)


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"hello, not a video\n" * 50, "not a readable")])
def test_probe_rejects_non_videos_with_a_reason(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(video.VideoError, match=reason):
        video.probe(str(path))


def test_encode_and_concat_keep_count_rate_and_order(tmp_path):
    frames = decode_all(make_index_video(tmp_path / "src.mp4", 23, fps="30000/1001"))
    parts = []
    for start in range(0, 23, 10):
        part = tmp_path / f"part{start}.mp4"
        with video.VideoWriter(str(part), 160, 96, Fraction(30000, 1001)) as writer:
            for frame in frames[start:start + 10]:
                writer.write(frame)
        parts.append(str(part))
    joined = tmp_path / "joined.mp4"
    video.concat_segments(parts, str(joined))
    info = video.probe(str(joined))
    assert info.frame_count == 23
    assert info.fps == Fraction(30000, 1001)
    assert [read_index(f) for f in decode_all(joined)] == list(range(23))


def test_odd_sizes_are_padded_to_the_next_even_size(tmp_path):
    frames = decode_all(make_index_video(tmp_path / "src.mp4", 5, width=160, height=96))
    out = tmp_path / "odd.mp4"
    with video.VideoWriter(str(out), 159, 95, Fraction(25)) as writer:
        for frame in frames:
            writer.write(frame[:95, :159].copy())
    info = video.probe(str(out))
    assert (info.width, info.height, info.frame_count) == (160, 96, 5)


def test_rotated_video_decodes_upright_at_its_display_size(tmp_path):
    source = make_index_video(tmp_path / "src.mp4", 9, width=160, height=96)
    rotated = tmp_path / "rotated.mp4"
    subprocess.run([video.ffmpeg_exe(), "-loglevel", "error", "-display_rotation:v:0", "90",
                    "-i", str(source), "-c", "copy", str(rotated)], check=True)
    info = video.probe(str(rotated))
    assert (info.width, info.height, info.rotation) == (96, 160, 90)
    frames = list(video.decode_frames(str(rotated), info, video.plan_segments(info, 4)[1]))
    assert [f.shape for f in frames] == [(160, 96, 3)] * 4


def test_segments_are_exact_when_the_video_starts_after_the_audio(tmp_path):
    """ffmpeg's -ss counts from the container start, here set by audio 0.5 s before the video."""
    numbered = make_index_video(tmp_path / "numbered.mp4", 40)
    shifted = tmp_path / "shifted.mp4"
    subprocess.run([video.ffmpeg_exe(), "-loglevel", "error", "-itsoffset", "0.5", "-i", str(numbered),
                    "-f", "lavfi", "-i", "sine=duration=3", "-map", "0:v", "-map", "1:a",
                    "-c:v", "copy", "-c:a", "aac", str(shifted)], check=True)
    info = video.probe(str(shifted))
    assert info.seek_offset_s == pytest.approx(0.5, abs=0.05)
    seen = []
    for seg in video.plan_segments(info, 10):
        seen += [read_index(f) for f in video.decode_frames(str(shifted), info, seg)]
    assert seen == list(range(40))


def _ffmpeg_children_niceness() -> list[int]:
    """Niceness of this process's ffmpeg children, read from /proc."""
    import os
    from pathlib import Path

    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, fields = text.split("(", 1)[1].rsplit(")", 1)[0], text.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid() and "ffmpeg" in name:
            found.append(int(fields[16]))  # field 19 of stat: nice
    return found


def test_streaming_ffmpeg_runs_below_the_model_priority(tmp_path):
    """Decoders and encoders give way to inference threads (they fill the gaps)."""
    import os

    path = make_index_video(tmp_path / "numbered.mp4", 9)
    info = video.probe(str(path))
    lowered = min(19, os.getpriority(os.PRIO_PROCESS, 0) + video.FFMPEG_NICENESS)
    frames = video.decode_frames(str(path), info, video.plan_segments(info, 9)[0])
    first = next(frames)
    assert _ffmpeg_children_niceness() == [lowered]
    frames.close()
    with video.VideoWriter(str(tmp_path / "out.mp4"), info.width, info.height, info.fps) as writer:
        writer.write(first)
        assert _ffmpeg_children_niceness() == [lowered]
