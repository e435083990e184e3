"""docs/default_vs_b0.jpg: two runs' overlays of one still side by side, each titled with its
model and preset and the class mix of the frame's top third.

    beam-seg segment STILL --output A                      # the default model (high for stills)
    beam-seg segment STILL --model efficientvit-b0-cityscapes --quality fast --output B
    python benchmarks/side_by_side.py A "default: ..." B "--model ..." docs/default_vs_b0.jpg
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from beam_seg.labels import CITYSCAPES  # noqa: E402
from beam_seg.media.render import read_label_png  # noqa: E402

WIDTH, HEIGHT, HEADER, GAP = 640, 360, 52, 10
FONTS = Path("/usr/share/fonts/truetype/dejavu")


def font(name: str, size: int):
    try:
        return ImageFont.truetype(str(FONTS / name), size)
    except OSError:
        return ImageFont.load_default()


def panel(out: Path, title: str) -> Image.Image:
    overlay = next((out / "overlays").rglob("*.jpg"))
    labels = read_label_png(next((out / "labels").rglob("*.png")).read_bytes())
    top = labels[: labels.shape[0] // 3]
    share = {n: (top == CITYSCAPES.names.index(n)).mean() for n in ("sky", "vegetation", "traffic sign")}
    canvas = Image.new("RGB", (WIDTH, HEIGHT + HEADER), "white")
    canvas.paste(Image.open(overlay).convert("RGB").resize((WIDTH, HEIGHT), Image.LANCZOS), (0, HEADER))
    draw = ImageDraw.Draw(canvas)
    draw.text((8, 6), title, fill=(0, 0, 0), font=font("DejaVuSans-Bold.ttf", 16))
    draw.text((8, 29), "top third: " + ", ".join(f"{n} {v:.0%}" for n, v in share.items()),
              fill=(60, 60, 60), font=font("DejaVuSans.ttf", 14))
    return canvas


def main(argv: list[str]) -> int:
    out_a, title_a, out_b, title_b, dest = argv
    picture = Image.new("RGB", (2 * WIDTH + GAP, HEIGHT + HEADER), "white")
    picture.paste(panel(Path(out_a), title_a), (0, 0))
    picture.paste(panel(Path(out_b), title_b), (WIDTH + GAP, 0))
    picture.save(dest, quality=85, optimize=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
