"""Encoding side of video I/O: segment mp4s from overlay pixels, and joining them.

Kept apart from probing and decoding (video.py, which re-exports these names); both run
ffmpeg through media/ffmpeg.py, so every encoder has a stall timeout too.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from beam_seg import storage
from beam_seg.media import ffmpeg
from beam_seg.media.ffmpeg import VideoError
from beam_seg.media.pixels import rgb_to_i420


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
                 sar: Fraction = Fraction(1), settings: EncodeSettings = EncodeSettings(),
                 stall_timeout_s: float = ffmpeg.STALL_TIMEOUT_S):
        self.path, self.width, self.height = path, width, height
        self.stall_timeout_s = stall_timeout_s
        self._watchdog: ffmpeg.Watchdog | None = None
        coded = f"{width + width % 2}x{height + height % 2}"  # see rgb_to_i420
        rate = f"{fps.numerator}/{fps.denominator}"
        self._args = [
            ffmpeg.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
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
        self._proc = ffmpeg.popen(self._args, stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ffmpeg.background(self._proc)
        self._watchdog = ffmpeg.Watchdog(self._proc, self.stall_timeout_s, "encoder")
        coded = (self.width + self.width % 2) * (self.height + self.height % 2)
        ffmpeg.widen_pipe(self._proc.stdin, coded * 3 // 2)
        return self

    def write(self, frame: np.ndarray) -> None:
        """One HxWx3 RGB uint8 frame."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame {frame.shape} {frame.dtype} does not match "
                             f"{self.height}x{self.width}x3 uint8")
        planes = rgb_to_i420(frame)
        try:
            with self._watchdog:
                self._proc.stdin.write(planes.data)
        except BrokenPipeError:
            code = self._proc.wait()
            self._watchdog.check()
            raise VideoError("ffmpeg encode failed: " + ffmpeg.exit_reason(
                code, self._proc.stderr.read().decode("utf-8", "replace"))) from None
        self.frames += 1

    def abort(self) -> None:
        """Stop the encoder and leave no file behind (a segment that will not be used)."""
        if self._watchdog is not None:
            self._watchdog.stop()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        with contextlib.suppress(OSError):
            os.remove(self.path)

    def __exit__(self, exc_type, exc, tb) -> None:
        with self._watchdog:  # the encoder flushes its last frames: bounded as well
            with contextlib.suppress(BrokenPipeError):  # ffmpeg died: its stderr says why
                self._proc.stdin.close()
            stderr = self._proc.stderr.read().decode("utf-8", "replace")
            code = self._proc.wait()
        self._watchdog.stop()
        if exc_type is None:
            self._watchdog.check()
        if exc_type is None and code != 0:
            raise VideoError(f"ffmpeg encode failed: {ffmpeg.exit_reason(code, stderr)}")


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
    with storage.ScratchDir("beam_seg_concat_") as tmp:
        list_path = os.path.join(tmp, "segments.txt")
        with open(list_path, "w", encoding="utf-8") as f:
            for path in segment_paths:
                escaped = os.path.abspath(path).replace("'", "'\\''")
                f.write(f"file '{escaped}'\n")
        args = ["-y", "-f", "concat", "-safe", "0", *ffmpeg.input_args(list_path)]
        if audio_source:
            args += [*ffmpeg.input_args(audio_source), "-map", "0:v:0", "-map", "1:a:0?"]
            copyable = audio_codec in ("aac", "mp3", "ac3", "eac3", "alac", "opus")
            args += ["-c:a", "copy" if copyable else "aac"]
        else:
            args += ["-map", "0:v:0"]
        args += ["-c:v", "copy", "-movflags", "+faststart", "-f", "mp4", output_path]
        proc = ffmpeg.run(args, timeout=ffmpeg.PROBE_TIMEOUT_S, stall_s=ffmpeg.STALL_TIMEOUT_S)
        if proc.returncode != 0:
            raise VideoError("concat failed: " + ffmpeg.exit_reason(
                proc.returncode, proc.stderr.decode("utf-8", "replace")))
