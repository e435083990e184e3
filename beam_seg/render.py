"""Turning label maps into pictures: palette PNGs that keep exact ids, and colour overlays."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from beam_seg.labels import LabelSet
from beam_seg.pixels import blend, colorize

# Level 1 is ~3x faster than Pillow's default 6 and label maps still compress ~20:1.
PNG_COMPRESS_LEVEL = 1
JPEG_QUALITY = 90


def label_png_bytes(ids: np.ndarray, label_set: LabelSet) -> bytes:
    """A one-channel palette PNG: pixel values are the class ids, colours show in any viewer."""
    image = Image.fromarray(ids, mode="P") if ids.dtype == np.uint8 else None
    if image is None:
        raise ValueError("label maps must be uint8")
    image.putpalette(label_set.palette.tobytes())
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def read_label_png(data: bytes) -> np.ndarray:
    """Class ids back from a label PNG (the palette index, never the colour)."""
    image = Image.open(io.BytesIO(data))
    if image.mode not in ("P", "L"):
        raise ValueError(f"label PNG must be P or L mode, got {image.mode}")
    return np.asarray(image, dtype=np.uint8)


def overlay(rgb: np.ndarray, ids: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend label colours over the frame: frame + alpha * (colour - frame), per channel."""
    return blend(rgb, colorize(ids, palette), alpha)


def encode_image(rgb: np.ndarray, fmt: str) -> bytes:
    """Overlay bytes as 'jpg' (small, fast) or 'png' (lossless).

    JPEGs come from OpenCV's libjpeg-turbo, fed the pixels in place: Pillow first copies
    a frame into its own 4-byte layout (1.1 ms per 960x540 frame against 0.9, same
    encoder settings: baseline, 4:2:0, quality 90).
    """
    if fmt == "jpg":
        bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return encoded.tobytes()
    if fmt == "png":
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        return buf.getvalue()
    raise ValueError("overlay format must be 'jpg' or 'png'")
