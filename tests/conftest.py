"""Shared fixtures: where the real models and footage live, and small synthetic media."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from beam_seg.media.video import ffmpeg_exe

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BEAM_SEG_SHARED", ROOT.parent / "shared")).resolve()
MODELS = SHARED / "models"
DATA = SHARED / "data"
os.environ.setdefault("BEAM_SEG_MODEL_DIR", str(MODELS))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Model downloads and remote-input copies never touch the user's real cache."""
    monkeypatch.setenv("BEAM_SEG_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "model-cache"))


BITS = 10  # frame indices up to 1023


def index_frame(index: int, width: int = 160, height: int = 96) -> np.ndarray:
    """A frame that shows its own index as BITS black/white bars (robust to H.264)."""
    frame = np.zeros((height, width, 3), np.uint8)
    bar = width // BITS
    for bit in range(BITS):
        if index >> bit & 1:
            frame[:, bit * bar:(bit + 1) * bar] = 255
    return frame


def read_index(frame: np.ndarray) -> int:
    width = frame.shape[1]
    bar = width // BITS
    value = 0
    for bit in range(BITS):
        if frame[:, bit * bar + 2:(bit + 1) * bar - 2].mean() > 127:
            value |= 1 << bit
    return value


def make_index_video(path: Path, frames: int, fps: str = "25", vfr: bool = False,
                     width: int = 160, height: int = 96, bframes: int = 3) -> Path:
    """Encode numbered frames with B-frames; `vfr` stretches later frame gaps irregularly."""
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
            "-framerate", fps, "-i", "-"]
    if vfr:
        args += ["-vf", "setpts='N/25/TB+if(gt(N,9),(N-9)*(N-9)*0.002/TB,0)'", "-fps_mode", "vfr"]
    args += ["-c:v", "libx264", "-bf", str(bframes), "-g", "12", "-pix_fmt", "yuv420p",
             "-crf", "10", str(path)]
    data = b"".join(index_frame(i, width, height).tobytes() for i in range(frames))
    subprocess.run(args, input=data, check=True)
    return path


def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame of a video, decoded in one plain pass (the reference for exactness)."""
    from beam_seg.media import video

    info = video.probe(str(path))
    seg = video.plan_segments(info, info.frame_count)[0]
    return [f.copy() for f in video.decode_frames(str(path), info, seg)]


# --- runs of the real pipeline that several second-tier modules read (once a session) ---

@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The demo clip and a still at the defaults (balanced, temporal fusion), threads: the
    pipeline tests read its outputs, the progress test its stderr."""
    from cli_runs import DEMO_CLIP, DEMO_STILL, finished_run

    return finished_run(tmp_path_factory.mktemp("demo"), str(DEMO_CLIP), str(DEMO_STILL),
                        "--segment-frames", "60")


@pytest.fixture(scope="session")
def demo_run_processes(tmp_path_factory):
    """Every 4th frame of the demo clip on worker processes, with 30-frame units (its first
    progress line came at 20% of the run's wall time here; the test allows 40%)."""
    from cli_runs import DEMO_CLIP, finished_run

    return finished_run(tmp_path_factory.mktemp("demo-processes"), str(DEMO_CLIP), "--segment-frames", "30",
                        "--every-nth-frame", "4", "--direct_running_mode=multi_processing",
                        "--direct_num_workers=2")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> tuple[str, ...]:
    """`segment` options for a tiny real TFLite model (19 Cityscapes logits, built once a
    session): for end-to-end runs whose subject is the pipeline, not the model's labels."""
    from fakes import build_tflite

    model = build_tflite(tmp_path_factory.mktemp("tiny-model"))
    return ("--model", str(model), "--labels", "cityscapes")
