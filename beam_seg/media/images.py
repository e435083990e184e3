"""Still-image decoding into RGB uint8, for any mode Pillow reads, with a bounded pixel count.

An animated GIF is an image: its first frame is segmented (a GIF's palette and timing
make a poor video source, and its first frame is what a viewer sees as its picture).

Pillow's own decompression-bomb guard only warns below 2x its limit; we check the
declared size before decoding so a 100k x 100k PNG costs a header read, not 30 GB.
Pillow's limit is raised to ours when ours is higher, so `--max-image-pixels` really is the
limit. EXIF orientation is applied, as photo viewers do: a phone photo tagged "rotate 90"
is segmented upright, and its outputs are upright too.
"""

from __future__ import annotations

import io
import re
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 80_000_000  # e.g. a 12k x 6.6k panorama; larger is refused


class ImageTooLargeError(ValueError):
    """The image declares more pixels than the configured limit."""


def to_rgb_uint8(image: Image.Image) -> np.ndarray:
    """Any Pillow mode (L, LA, P, RGBA, I;16, I, F, CMYK …) -> HxWx3 uint8 RGB.

    16-bit and 32-bit images are scaled by their bit depth, not clipped, so a 16-bit
    grayscale frame keeps its picture instead of saturating to white. Alpha is dropped
    (composited over black would invent colours the camera never saw).
    """
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(image, dtype=np.uint16)
        gray = (arr >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def decode_image(data: bytes | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (or a seekable stream, read only as far as needed) to RGB
    uint8, refusing images above `max_pixels` from their header, and turned upright as its
    EXIF orientation says (as photo viewers show a phone's photo)."""
    if max_pixels > (Image.MAX_IMAGE_PIXELS or max_pixels):  # ours is the limit, not Pillow's
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
    except Image.DecompressionBombError as exc:  # far over: Pillow refused it from the header
        size = re.search(r"\((\d+) pixels\)", str(exc))  # Pillow's own limit is not the user's
        raise ImageTooLargeError(f"image is {size.group(1) + ' pixels, ' if size else ''}over the "
                                 f"limit of {max_pixels} (raise it with --max-image-pixels)") from None
    except Image.UnidentifiedImageError:  # never quote its bytes: they may be anyone's secret
        raise ValueError("not a readable image (not a format Pillow reads)") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels} (raise it with --max-image-pixels)"
        )
    image.seek(0)  # the first frame of an animated GIF, WebP or multi-page TIFF
    image.load()
    return to_rgb_uint8(ImageOps.exif_transpose(image))
