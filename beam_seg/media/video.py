"""Video I/O as plain functions over imageio-ffmpeg's ffmpeg binary: probe, plan, decode, encode, concat.

No Beam here. ffmpeg is always run with an argument list (never a shell string), so
file names with spaces, quotes or `$` are just names.

Frame-exact segments: the probe lists every video packet's presentation timestamp
(a stream copy, no decoding), so frame i is the i-th smallest timestamp. A segment
starting at frame a seeks to the midpoint between frames a-1 and a; ffmpeg's accurate
seek decodes from the preceding keyframe and drops everything before that time, so the
first frame out is exactly frame a, with B-frames and variable frame rates alike.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import imageio_ffmpeg
import numpy as np

from beam_seg.media.pixels import rgb_to_i420


class VideoError(RuntimeError):
    """The file is not a decodable video (no video stream, corrupt, truncated …)."""


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


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

    @property
    def stop(self) -> int:
        return self.start + self.count


_VIDEO_LINE = re.compile(r"Stream #\d+:(\d+)[^:]*: Video: (\w+).*?, (\d+)x(\d+)(?: \[SAR (\d+):(\d+))?")
_AUDIO_LINE = re.compile(r"Stream #\d+:\d+[^:]*: Audio: (\w+)")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")
_START = re.compile(r"Duration: [^,]*, start: (-?[\d.]+)")
_ATTACHED_PIC = "(attached pic)"


PROBE_TIMEOUT_S = 1800  # a stream copy of hours of video takes seconds; a hang becomes an error


def _input(path: str) -> list[str]:
    """An input that may only be read from local files or pipes: a file that is really a
    playlist (HLS, ffconcat) cannot make ffmpeg fetch URLs."""
    return ["-protocol_whitelist", "file,pipe", "-i", path]


def _run(args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *args],
                          capture_output=True, timeout=timeout, check=False)


def _stream_header(path: str) -> str:
    """ffmpeg's description of the input's streams (it exits 1 as no output is given)."""
    return _run([*_input(path)], timeout=PROBE_TIMEOUT_S).stderr.decode("utf-8", "replace")


def _packet_timestamps(path: str) -> tuple[Fraction, list[int], list[int]]:
    """Time base, sorted presentation timestamps and durations of every video packet."""
    proc = _run(["-copyts", *_input(path), "-map", "0:V:0", "-c", "copy", "-f", "framecrc", "-"],
                timeout=PROBE_TIMEOUT_S)
    time_base = None
    pts: list[int] = []
    durations: list[int] = []
    for line in proc.stdout.decode("ascii", "replace").splitlines():
        if line.startswith("#tb 0:"):
            time_base = Fraction(line.split(":", 1)[1].strip())
        elif line and not line.startswith("#"):
            fields = line.split(",")
            pts.append(int(fields[2]))
            durations.append(int(fields[3]))
    if time_base is None or not pts:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        raise VideoError("no decodable video packets" + (f": {tail[0]}" if tail else ""))
    return time_base, sorted(pts), durations


def probe(path: str) -> VideoInfo:
    """Describe a local video file; raises VideoError when it has no usable video stream."""
    if os.path.getsize(path) == 0:
        raise VideoError("file is empty (0 bytes)")
    header = _stream_header(path)
    video_lines = [line for line in header.splitlines()
                   if ": Video: " in line and _ATTACHED_PIC not in line]
    if not video_lines:
        if "Invalid data found" in header or "moov atom not found" in header:
            raise VideoError("not a readable media file: " + _last_error(header))
        raise VideoError("no video stream (audio-only or not a video)")
    match = _VIDEO_LINE.search(video_lines[0])
    if not match:
        raise VideoError(f"cannot parse the video stream description: {video_lines[0].strip()}")
    codec, width, height = match.group(2), int(match.group(3)), int(match.group(4))
    sar = Fraction(int(match.group(5)), int(match.group(6))) if match.group(5) else Fraction(1)
    if sar <= 0:
        sar = Fraction(1)
    rotation_match = _ROTATION.search(header)
    rotation = round(float(rotation_match.group(1))) % 360 if rotation_match else 0
    if rotation in (90, 270):
        width, height = height, width
        sar = 1 / sar
    audio = _AUDIO_LINE.search(header)

    time_base, pts, durations = _packet_timestamps(path)
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
                     variable_frame_rate=variable, timestamps_s=timestamps)


def _mode(values: list[int]) -> int:
    if not values:
        return 0
    uniq, counts = np.unique(np.asarray(values), return_counts=True)
    return int(uniq[np.argmax(counts)])


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "ffmpeg gave no reason"


def plan_segments(info: VideoInfo, segment_frames: int) -> list[Segment]:
    """Cut [0, frame_count) into consecutive ranges of at most `segment_frames` frames."""
    if segment_frames < 1:
        raise ValueError("segment_frames must be at least 1")
    ts = info.timestamps_s
    segments = []
    for index, start in enumerate(range(0, info.frame_count, segment_frames)):
        count = min(segment_frames, info.frame_count - start)
        seek = 0.0 if start == 0 else info.seek_offset_s + (ts[start - 1] + ts[start]) / 2
        segments.append(Segment(index, start, count, seek, tuple(ts[start:start + count])))
    return segments


def decode_frames(path: str, info: VideoInfo, segment: Segment) -> Iterator[np.ndarray]:
    """Yield the segment's frames as HxWx3 RGB uint8, streamed: one frame in memory at a time.

    Fewer frames than planned means the file is truncated or corrupt there; the caller
    sees it by counting (it raises nothing itself so the good frames are kept).
    """
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"]
    if segment.seek_s > 0:
        args += ["-ss", f"{segment.seek_s:.6f}"]
    # One decoder thread: segments already decode in parallel (one per bundle thread),
    # and frame threads would only add CPU the model needs.
    args += ["-threads", "1", *_input(path), "-map", "0:V:0", "-frames:v", str(segment.count),
             "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    frame_bytes = info.width * info.height * 3
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, bufsize=0)
    _background(proc)
    _widen_pipe(proc.stdout, frame_bytes)
    try:
        for _ in range(segment.count):
            buf = _read_exactly(proc.stdout, frame_bytes)
            if buf is None:
                return
            yield np.frombuffer(buf, np.uint8).reshape(info.height, info.width, 3)
    finally:
        proc.stdout.close()
        proc.kill()
        proc.wait()


# Niceness of the ffmpeg decoders and encoders that stream beside inference. The model's
# threads meet at a barrier after every layer, so a core lent to ffmpeg at the wrong
# moment idles the other one; at lower priority ffmpeg fills the gaps instead
# (measured on 2 cores: +3% frames/s, and decoding still keeps ahead of the model).
FFMPEG_NICENESS = 10


def _background(proc: subprocess.Popen) -> None:
    """Lower a streaming ffmpeg's priority (best effort: not every OS or sandbox allows it)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, proc.pid, FFMPEG_NICENESS)


def _widen_pipe(stream, frame_bytes: int) -> None:
    """Let a pipe hold up to a whole frame (Linux; 64 KiB by default), so a frame passes
    in one go instead of waking the reader and the writer a dozen times each."""
    try:
        import fcntl
        setpipe = fcntl.F_SETPIPE_SZ
    except (ImportError, AttributeError):  # not Linux
        return
    for size in (frame_bytes, 1 << 20):  # the system's cap (pipe-max-size) is often 1 MiB
        try:
            fcntl.fcntl(stream.fileno(), setpipe, size)
            return
        except OSError:
            continue


def _read_exactly(stream, n: int) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        chunk = stream.readinto(view[got:])
        if not chunk:
            return None
        got += chunk
    return buf


@dataclass(frozen=True)
class EncodeSettings:
    """x264 settings for segment videos.

    Measured on 960x540 dashcam frames (CPU ms per frame in ffmpeg / size): veryfast CRF 20
    10.5 ms / 1.0x, superfast CRF 23 7.5 ms / 1.1x, ultrafast CRF 23 5.7 ms / 1.3x. The
    encoder shares the cores with inference, so the default buys speed with a little size.
    """

    preset: str = "ultrafast"
    crf: int = 23
    threads: int = 1  # x264's threads cost ~10% more CPU; segments encode side by side anyway


class VideoWriter:
    """Pipe RGB frames into an H.264/yuv420p mp4 (a context manager, like supervision's VideoSink).

    Frames are converted to the encoder's own 4:2:0 layout in OpenCV (BT.601, video range:
    what ffmpeg would pick), so ffmpeg only encodes: 0.65 ms in Python plus 2.4 ms of
    x264 per 960x540 frame, where piping RGB costs 3.4 ms in ffmpeg and re-decoding
    overlay JPEGs 3.8 ms.

    H.264 in 4:2:0 (what browsers play) can only code even sizes, and its header
    cropping works in steps of 2 as well, so an odd width or height is padded by one
    black pixel: the only case where the output size differs from the source.
    """

    def __init__(self, path: str, width: int, height: int, fps: Fraction,
                 sar: Fraction = Fraction(1), settings: EncodeSettings = EncodeSettings()):
        self.path, self.width, self.height = path, width, height
        coded = f"{width + width % 2}x{height + height % 2}"  # see rgb_to_i420
        rate = f"{fps.numerator}/{fps.denominator}"
        self._args = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", coded, "-framerate", rate, "-i", "-",
            "-vf", f"setsar={sar.numerator}/{sar.denominator}",
            "-c:v", "libx264", "-preset", settings.preset, "-crf", str(settings.crf), "-bf", "0",
            "-threads", str(settings.threads),
            "-pix_fmt", "yuv420p", "-video_track_timescale", str(_timescale(fps)),
            "-f", "mp4", path,
        ]
        self._proc: subprocess.Popen | None = None
        self.frames = 0

    def __enter__(self) -> VideoWriter:
        self._proc = subprocess.Popen(self._args, stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _background(self._proc)
        coded = (self.width + self.width % 2) * (self.height + self.height % 2)
        _widen_pipe(self._proc.stdin, coded * 3 // 2)
        return self

    def write(self, frame: np.ndarray) -> None:
        """One HxWx3 RGB uint8 frame."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame {frame.shape} {frame.dtype} does not match "
                             f"{self.height}x{self.width}x3 uint8")
        planes = rgb_to_i420(frame)
        try:
            self._proc.stdin.write(planes.data)
        except BrokenPipeError:
            self._proc.wait()
            raise VideoError("ffmpeg encode failed: " + _last_error(
                self._proc.stderr.read().decode("utf-8", "replace"))) from None
        self.frames += 1

    def abort(self) -> None:
        """Stop the encoder and leave no file behind (a segment that will not be used)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        with contextlib.suppress(OSError):
            os.remove(self.path)

    def __exit__(self, exc_type, exc, tb) -> None:
        with contextlib.suppress(BrokenPipeError):  # ffmpeg died: its stderr says why
            self._proc.stdin.close()
        stderr = self._proc.stderr.read().decode("utf-8", "replace")
        code = self._proc.wait()
        if exc_type is None and code != 0:
            raise VideoError(f"ffmpeg encode failed: {_last_error(stderr)}")


def _timescale(fps: Fraction) -> int:
    """An mp4 track timescale that represents every frame time exactly (30000 for 30000/1001)."""
    scale = fps.numerator
    while scale < 10000:
        scale *= 2
    return scale


def concat_segments(segment_paths: list[str], output_path: str,
                    audio_source: str | None = None, audio_codec: str | None = None) -> None:
    """Join H.264 segment files by stream copy (no re-encode), adding the source's audio."""
    if not segment_paths:
        raise ValueError("no segments to join")
    with tempfile.TemporaryDirectory(prefix="beam_seg_concat_") as tmp:
        list_path = os.path.join(tmp, "segments.txt")
        with open(list_path, "w", encoding="utf-8") as f:
            for path in segment_paths:
                escaped = os.path.abspath(path).replace("'", "'\\''")
                f.write(f"file '{escaped}'\n")
        args = ["-y", "-f", "concat", "-safe", "0", *_input(list_path)]
        if audio_source:
            args += [*_input(audio_source), "-map", "0:v:0", "-map", "1:a:0?"]
            copyable = audio_codec in ("aac", "mp3", "ac3", "eac3", "alac", "opus")
            args += ["-c:a", "copy" if copyable else "aac"]
        else:
            args += ["-map", "0:v:0"]
        args += ["-c:v", "copy", "-movflags", "+faststart", "-f", "mp4", output_path]
        proc = _run(args, timeout=PROBE_TIMEOUT_S)
        if proc.returncode != 0:
            raise VideoError("concat failed: " + _last_error(proc.stderr.decode("utf-8", "replace")))
