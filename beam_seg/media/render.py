"""Turning label maps into pictures: palette PNGs that keep exact ids, and colour overlays."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
from PIL import Image

from beam_seg.labels import LabelSet
from beam_seg.media.pixels import blend, colorize

# zlib level for PNG overlays: ~3x faster than Pillow's default 6, for a few % in size.
PNG_COMPRESS_LEVEL = 1
JPEG_QUALITY = 90


def label_png_bytes(ids: np.ndarray, label_set: LabelSet) -> bytes:
    """A one-channel palette PNG: pixel values are the class ids, colours show in any viewer.

    Label maps are long runs of one id, so rows go unfiltered through zlib's run-length
    strategy: per 960x540 map 0.6 ms and 6.6 kB, where Pillow's level 1 takes 0.77 ms
    for 11.9 kB. OpenCV writes it as greyscale, whose pixel data is byte for byte that of
    an 8-bit palette PNG, so only the header changes and the label colours are added.
    """
    if ids.dtype != np.uint8 or ids.ndim != 2:
        raise ValueError("label maps must be 2-D uint8")
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(ids), [
        cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESS_LEVEL,
        cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE,
        cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE])
    if not ok:
        raise ValueError("PNG encoding failed")
    return _as_palette_png(encoded.tobytes(), label_set.palette)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _as_palette_png(grey_png: bytes, palette: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG -> the same pixels as palette indices, with a PLTE chunk."""
    # signature (8 bytes), then IHDR: length (4), type (4), 13 bytes of fields, CRC (4)
    header = bytearray(grey_png[16:29])
    if grey_png[:8] != _PNG_SIGNATURE or grey_png[12:16] != b"IHDR" or header[8:10] != b"\x08\x00":
        raise ValueError("expected an 8-bit greyscale PNG")
    header[9] = 3  # colour type 3: palette indices
    colours = np.ascontiguousarray(palette, np.uint8).reshape(-1, 3)[:256]
    return (grey_png[:8] + _png_chunk(b"IHDR", bytes(header))
            + _png_chunk(b"PLTE", colours.tobytes()) + grey_png[33:])


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


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
