"""Video I/O as plain functions over imageio-ffmpeg's ffmpeg binary: probe, plan, decode, encode, concat.

No Beam here. ffmpeg is always run with an argument list (never a shell string), so
file names with spaces, quotes or `$` are just names.

Frame-exact segments: the probe lists every video packet's presentation timestamp
(a stream copy, no decoding), so frame i is the i-th smallest timestamp. A segment
starting at frame a seeks to the midpoint between frames a-1 and a; ffmpeg's accurate
seek decodes from the preceding keyframe and drops everything before that time, so the
first frame out is exactly frame a, with B-frames and variable frame rates alike.

Everything is read from the one stream that is decoded (`0:V:0`): its rotation, its size
as the decoder gives it, its packets. Packets an edit list cuts away (a stream-copy trim
`ffmpeg -ss 0.5 -i a.mp4 -c copy b.mp4` keeps them from the keyframe on) carry ffmpeg's
discard flag and are never shown, so they are not planned either. Every ffmpeg child has
a stall timeout: one that gives no frame (or takes none) for that long is killed and its
step fails with a reason instead of hanging the run.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from beam_seg.media.encode import EncodeSettings, VideoWriter, concat_segments  # noqa: F401  (video.*)
from beam_seg.media.ffmpeg import (  # noqa: F401  (ffmpeg_exe, VideoError, FFMPEG_NICENESS: used via video.*)
    FFMPEG_NICENESS,
    PROBE_TIMEOUT_S,
    STALL_TIMEOUT_S,
    VideoError,
    Watchdog,
    background,
    ffmpeg_exe,
    input_args,
    last_error,
    popen,
    read_exactly,
    run,
    widen_pipe,
)


@dataclass(frozen=True)
class VideoInfo:
    """What planning, decoding and reassembly need to know about a source video."""

    width: int  # decoded frame size, after applying the rotation metadata
    height: int
    frame_count: int
    fps: Fraction  # output rate: the exact rational for constant-rate sources
    duration_s: float
    rotation: int = 0
    sar: Fraction = Fraction(1)
    codec: str = ""
    audio_codec: str | None = None
    variable_frame_rate: bool = False
    seek_offset_s: float = 0.0  # first video frame's time after the container's start
    reorder_s: float = 0.0  # largest presentation-after-decode delay of any packet (B-frames)
    timestamps_s: tuple[float, ...] = field(default=(), repr=False)

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


@dataclass(frozen=True)
class Segment:
    """A frame range [start, start+count) of one video, with what decoding it needs."""

    index: int
    start: int
    count: int
    seek_s: float
    timestamps_s: tuple[float, ...]
    # ffmpeg seeks this much before seek_s and trims up to it on the output: enough that the
    # keyframe it lands on comes, in decode order, before every frame shown from seek_s on
    preroll_s: float = 0.0

    @property
    def stop(self) -> int:
        return self.start + self.count


_STREAM_LINE = re.compile(r"^\s*Stream #\d+:\d+")
_VIDEO_LINE = re.compile(r"Stream #\d+:(\d+)[^:]*: Video: (\w+)")
_AUDIO_LINE = re.compile(r"Stream #\d+:\d+[^:]*: Audio: (\w+)")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")
_START = re.compile(r"Duration: [^,]*, start: (-?[\d.]+)")
_ATTACHED_PIC = "(attached pic)"
_DISCARD = 0x4  # AV_PKT_FLAG_DISCARD: a packet an edit list cuts away (decoded, never shown)


def _stream_header(path: str) -> str:
    """ffmpeg's description of the input's streams (it exits 1 as no output is given)."""
    # reading a header (and, below, decoding one frame) never takes long: a hang is a stall
    return run([*input_args(path)], timeout=STALL_TIMEOUT_S).stderr.decode("utf-8", "replace")


def _video_stream_block(header: str) -> list[str]:
    """The lines describing the stream `-map 0:V:0` decodes (the first video stream that
    is not a cover picture) and only those: its side data (rotation) follows its line."""
    lines = header.splitlines()
    for i, line in enumerate(lines):
        if ": Video: " in line and _ATTACHED_PIC not in line and _STREAM_LINE.match(line):
            indent = len(line) - len(line.lstrip())
            block = [line]
            for follow in lines[i + 1:]:
                if _STREAM_LINE.match(follow) or len(follow) - len(follow.lstrip()) <= indent:
                    break
                block.append(follow)
            return block
    return []


@dataclass(frozen=True)
class _Packets:
    """The decoded stream's shown packets (sorted presentation times) and their timing."""

    time_base: Fraction
    pts: list[int]
    durations: list[int]
    reorder: int  # max(pts - dts) over every packet, in time_base units


def _packet_timestamps(path: str) -> _Packets:
    """Time base, sorted presentation timestamps and durations of every shown video packet."""
    proc = run(["-copyts", *input_args(path), "-map", "0:V:0", "-c", "copy", "-f", "framecrc", "-"],
               timeout=PROBE_TIMEOUT_S, stall_s=STALL_TIMEOUT_S)
    time_base = None
    pts: list[int] = []
    durations: list[int] = []
    reorder = 0
    for line in proc.stdout.decode("ascii", "replace").splitlines():
        if line.startswith("#tb 0:"):
            time_base = Fraction(line.split(":", 1)[1].strip())
        elif line and not line.startswith("#"):
            fields = [f.strip() for f in line.split(",")]
            # framecrc prints the flags only when they are not exactly "keyframe"
            flags = next((int(f[2:], 16) for f in fields[6:] if f.startswith("F=")), 1)
            reorder = max(reorder, int(fields[2]) - int(fields[1]))
            if flags & _DISCARD:
                continue
            pts.append(int(fields[2]))
            durations.append(int(fields[3]))
    if time_base is None or not pts:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        raise VideoError("no decodable video packets" + (f": {tail[0]}" if tail else ""))
    return _Packets(time_base, sorted(pts), durations, reorder)


_DIMENSIONS = re.compile(r"^#dimensions 0: (\d+)x(\d+)", re.M)
_SAR = re.compile(r"^#sar 0: (\d+)/(\d+)", re.M)


def _decoded_format(path: str) -> tuple[int, int, Fraction]:
    """Size and sample aspect of the frames the decoder gives, rotation applied: what
    `decode_frames` will read, whatever the container's headers claim."""
    proc = run([*input_args(path), "-map", "0:V:0", "-frames:v", "1", "-f", "framecrc", "-"],
                timeout=STALL_TIMEOUT_S)
    out = proc.stdout.decode("ascii", "replace")
    dims = _DIMENSIONS.search(out)
    if not dims or "\n0," not in out:
        raise VideoError("no decodable video frame: " + last_error(proc.stderr.decode("utf-8", "replace")))
    sar = _SAR.search(out)
    aspect = Fraction(int(sar.group(1)), int(sar.group(2))) if sar and int(sar.group(2)) else Fraction(1)
    return int(dims.group(1)), int(dims.group(2)), aspect if aspect > 0 else Fraction(1)


def probe(path: str) -> VideoInfo:
    """Describe a local video file; raises VideoError when it has no usable video stream."""
    if os.path.getsize(path) == 0:
        raise VideoError("file is empty (0 bytes)")
    header = _stream_header(path)
    block = _video_stream_block(header)
    if not block:
        if "Invalid data found" in header or "moov atom not found" in header:
            raise VideoError("not a readable media file: " + last_error(header))
        raise VideoError("no video stream (audio-only or not a video)")
    match = _VIDEO_LINE.search(block[0])
    if not match:
        raise VideoError(f"cannot parse the video stream description: {block[0].strip()}")
    codec = match.group(2)
    rotation_match = _ROTATION.search("\n".join(block))
    rotation = round(float(rotation_match.group(1))) % 360 if rotation_match else 0
    width, height, sar = _decoded_format(path)
    audio = _AUDIO_LINE.search(header)

    packets = _packet_timestamps(path)
    time_base, pts, durations = packets.time_base, packets.pts, packets.durations
    first = pts[0]
    timestamps = tuple(float((p - first) * time_base) for p in pts)
    steps = [b - a for a, b in itertools.pairwise(pts)]
    typical = _mode(steps) if steps else (_mode(durations) or 1)
    last_duration = typical if typical > 0 else 1
    duration = float((pts[-1] - first + last_duration) * time_base)
    variable = bool(steps) and any(abs(s - typical) > max(1, typical // 100) for s in steps)
    if variable:
        fps = Fraction(len(pts) / duration).limit_denominator(1001)
    else:
        fps = 1 / (typical * time_base) if typical > 0 else Fraction(25)
    # ffmpeg's -ss counts from the container's start, which an audio stream may set earlier
    # than the first video frame.
    start_match = _START.search(header)
    container_start = float(start_match.group(1)) if start_match else float(first * time_base)
    offset = max(0.0, float(first * time_base) - container_start)
    return VideoInfo(width=width, height=height, frame_count=len(pts), fps=fps, seek_offset_s=offset,
                     duration_s=duration, rotation=rotation, sar=sar, codec=codec,
                     audio_codec=audio.group(1) if audio else None,
                     variable_frame_rate=variable, reorder_s=float(packets.reorder * time_base),
                     timestamps_s=timestamps)


def count_frames(path: str) -> int:
    """Frames a finished video shows (its packets, less any an edit list cuts away): the
    check an assembled video passes before its input is marked done."""
    return len(_packet_timestamps(path).pts)


def _mode(values: list[int]) -> int:
    if not values:
        return 0
    uniq, counts = np.unique(np.asarray(values), return_counts=True)
    return int(uniq[np.argmax(counts)])


def plan_segments(info: VideoInfo, segment_frames: int) -> list[Segment]:
    """Cut [0, frame_count) into consecutive ranges of at most `segment_frames` frames."""
    if segment_frames < 1:
        raise ValueError("segment_frames must be at least 1")
    ts = info.timestamps_s
    segments = []
    for index, start in enumerate(range(0, info.frame_count, segment_frames)):
        count = min(segment_frames, info.frame_count - start)
        seek = 0.0 if start == 0 else info.seek_offset_s + (ts[start - 1] + ts[start]) / 2
        # ffmpeg's demuxer seeks by decode time, to 3/23 s before the target when there are
        # B-frames. A frame shown more than that after it is decoded (B-frames at a low or
        # variable rate) would come before the keyframe it lands on and be lost, so seek
        # earlier by the stream's largest such delay and trim the rest on the output.
        preroll = min(seek, info.reorder_s) if seek > 0 else 0.0
        segments.append(Segment(index, start, count, seek, tuple(ts[start:start + count]), preroll))
    return segments


def decode_frames(path: str, info: VideoInfo, segment: Segment,
                  stall_timeout_s: float = STALL_TIMEOUT_S) -> Iterator[np.ndarray]:
    """Yield the segment's frames as HxWx3 RGB uint8, streamed: one frame in memory at a time.

    Fewer frames than planned means the file is truncated or corrupt there; the caller
    sees it by counting (it raises nothing itself so the good frames are kept). A decoder
    that gives no frame for `stall_timeout_s` is killed and raises VideoError.
    """
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"]
    if segment.seek_s - segment.preroll_s > 0:
        args += ["-ss", f"{segment.seek_s - segment.preroll_s:.6f}"]
    # One decoder thread: segments already decode in parallel (one per bundle thread),
    # and frame threads would only add CPU the model needs.
    args += ["-threads", "1", *input_args(path), "-map", "0:V:0", "-frames:v", str(segment.count),
             "-fps_mode", "passthrough"]
    if segment.preroll_s > 0:
        args += ["-ss", f"{segment.preroll_s:.6f}"]
    args += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    frame_bytes = info.width * info.height * 3
    proc = popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                 stderr=subprocess.DEVNULL, bufsize=0)
    background(proc)
    widen_pipe(proc.stdout, frame_bytes)
    watchdog = Watchdog(proc, stall_timeout_s, "decoder")
    try:
        for _ in range(segment.count):
            with watchdog:
                buf = read_exactly(proc.stdout, frame_bytes)
            watchdog.check()
            if buf is None:
                return
            yield np.frombuffer(buf, np.uint8).reshape(info.height, info.width, 3)
    finally:
        watchdog.stop()
        proc.stdout.close()
        proc.kill()
        proc.wait()
