"""Annotated video made from an annotated still: a camera moves over the picture (a slow
zoom-in and pan, with a few frames of small shake) and the same transform is applied to
its ground truth with nearest-neighbour sampling, so every frame has ground truth.

Real clips with ground truth on every frame do not exist here (Cityscapes annotates one
frame of thirty), so these clips are what temporal fusion is measured on frame by frame:
fusion must keep or raise mIoU on them while cutting flicker. Pure array work; `write_clip`
encodes a clip with ffmpeg (imageio-ffmpeg) at a quality high enough not to matter.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass

import cv2
import numpy as np

IGNORE = 255


@dataclass(frozen=True)
class CameraPath:
    """The camera's move over a clip of `frames` frames. `zoom`: how much larger the picture
    is at the last frame than at the first (the first frame shows nearly the widest view that
    keeps the output's aspect, with room left for the pan). `pan`: horizontal drift of the
    view's centre over the clip, as a share of the source width. `shake`: the frames
    (indices) jolted by up to `shake_px` output pixels and `shake_deg` degrees, from a
    seeded generator."""

    frames: int = 16
    zoom: float = 1.2
    pan: float = 0.05
    shake: tuple[int, ...] = (6, 7, 8)
    shake_px: float = 3.0
    shake_deg: float = 0.6
    seed: int = 0


def camera_matrices(path: CameraPath, src_width: int, src_height: int, width: int,
                    height: int) -> list[np.ndarray]:
    """One 2x3 matrix per frame mapping output pixel (u, v, 1) to source pixel (x, y)."""
    # source pixels per output pixel at frame 0: the widest view that leaves room for the pan
    base = min(src_width / width, src_height / height) * (1 - path.pan)
    rng = np.random.default_rng(path.seed)
    out = []
    for t in range(path.frames):
        s = t / max(1, path.frames - 1)
        scale = base / path.zoom ** s
        view_w = width * scale
        cx = src_width / 2 + (s - 0.5) * path.pan * src_width
        cx = min(max(cx, view_w / 2), src_width - view_w / 2)
        cy = src_height / 2
        angle, dx, dy = 0.0, 0.0, 0.0
        if t in path.shake:
            dx, dy = rng.uniform(-path.shake_px, path.shake_px, 2) * scale
            angle = math.radians(rng.uniform(-path.shake_deg, path.shake_deg))
        cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
        # output centre -> view centre, rotated and scaled
        u0, v0 = (width - 1) / 2, (height - 1) / 2
        matrix = np.array([[cos, -sin, cx - 0.5 + dx - cos * u0 + sin * v0],
                           [sin, cos, cy - 0.5 + dy - sin * u0 - cos * v0]], np.float64)
        out.append(matrix)
    return out


def render(rgb: np.ndarray, truth: np.ndarray, matrices: list[np.ndarray], width: int,
           height: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The clip's frames (bilinear, from a copy area-averaged to about the output's scale, so
    a big still is not aliased) and their ground truth (nearest neighbour, 255 outside)."""
    if truth.shape != rgb.shape[:2]:
        raise ValueError(f"ground truth {truth.shape} and picture {rgb.shape[:2]} differ in size")
    reduce = max(1.0, float(np.hypot(*matrices[-1][0, :2])))  # the clip's least source/output ratio
    small = rgb
    if reduce > 1.0:
        small = cv2.resize(rgb, (round(rgb.shape[1] / reduce), round(rgb.shape[0] / reduce)),
                           interpolation=cv2.INTER_AREA)
    fx, fy = small.shape[1] / rgb.shape[1], small.shape[0] / rgb.shape[0]
    frames, truths = [], []
    for matrix in matrices:
        on_small = np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5]]) @ np.vstack(
            [matrix, [0, 0, 1]])
        frames.append(cv2.warpAffine(small, on_small, (width, height),
                                     flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_REFLECT))
        truths.append(cv2.warpAffine(truth, matrix, (width, height),
                                     flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE))
    return frames, truths


def make_clip(rgb: np.ndarray, truth: np.ndarray, width: int = 512, height: int = 288,
              path: CameraPath = CameraPath()) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A clip of `path.frames` frames of width x height over an annotated still."""
    src_h, src_w = rgb.shape[:2]
    return render(rgb, truth, camera_matrices(path, src_w, src_h, width, height), width, height)


def write_clip(frames: list[np.ndarray], out: str, fps: int = 15) -> str:
    """Encode RGB frames as H.264 at CRF 8 (near lossless for the model) with ffmpeg."""
    from imageio_ffmpeg import get_ffmpeg_exe

    height, width = frames[0].shape[:2]
    args = [get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
            "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(fps), "-i", "-",
            "-c:v", "libx264", "-preset", "medium", "-crf", "8", "-pix_fmt", "yuv444p", out]
    subprocess.run(args, input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames), check=True)
    return out
