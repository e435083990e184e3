"""`make bench`'s model rows: the pipeline's cost per frame for several models (or layouts) at
`--quality fast` on the udacity clip, every output written, measured interleaved in one run.

Each variant is `LABEL=MODEL[ EXTRA SEGMENT OPTIONS]`; its figure is the marginal cost per
frame between the clip and the same clip three times over (start-up cancels out), median of
`--repeats`, and its ratio to the first variant.

    python benchmarks/bench_models.py --out bench-out [--repeats 3] \\
        [--variant "default=cityscapes-edgetpu-slim" --variant "b0=efficientvit-b0-cityscapes"]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench import UDACITY, ffmpeg, run_pipeline  # noqa: E402

from beam_seg.media import video  # noqa: E402
from beam_seg.models import DEFAULT_MODEL  # noqa: E402

DEFAULT_VARIANTS = (
    f"default fast={DEFAULT_MODEL}",
    "efficientvit-b0 fast=efficientvit-b0-cityscapes",
)


def udacity_clips(work: Path, frames: int) -> tuple[Path, Path]:
    """The udacity clip's first `frames` frames (video only), and the same three times over."""
    work.mkdir(parents=True, exist_ok=True)
    x1, x3 = work / f"udacity_{frames}_x1.mp4", work / f"udacity_{frames}_x3.mp4"
    ffmpeg("-i", str(UDACITY), "-map", "0:V:0", "-frames:v", str(frames), "-c:v", "libx264",
           "-crf", "18", "-pix_fmt", "yuv420p", str(x1))
    listing = work / "x3.txt"
    listing.write_text(f"file '{x1.resolve()}'\n" * 3)
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(x3))
    return x1, x3


def parse_variant(text: str) -> tuple[str, str, list[str]]:
    label, _, rest = text.partition("=")
    model, *extra = rest.split()
    return label, model, extra


def compare(clip_x1: Path, clip_x3: Path, variants: list[str], scratch: Path,
            repeats: int) -> dict:
    """{label: {ms_per_frame, ratio, runs}}, the variants' runs interleaved repeat by repeat."""
    n1, n3 = video.probe(str(clip_x1)).frame_count, video.probe(str(clip_x3)).frame_count
    parsed = [parse_variant(v) for v in variants]
    runs: dict[str, list[float]] = {label: [] for label, _, _ in parsed}
    for repeat in range(repeats):
        for index, (label, model, extra) in enumerate(parsed):
            print(f"[models] repeat {repeat + 1}/{repeats}: {label}", file=sys.stderr, flush=True)
            args = ["--model", model, "--quality", "fast", "--overwrite", *extra]
            base = scratch / f"{index}-{repeat}"
            p1 = run_pipeline(clip_x1, base / "x1", args)
            p3 = run_pipeline(clip_x3, base / "x3", args)
            runs[label].append(1000 * (p3["seconds"] - p1["seconds"]) / (n3 - n1))
            print(f"[models] {label}: {runs[label][-1]:.1f} ms per frame", file=sys.stderr, flush=True)
            shutil.rmtree(base, ignore_errors=True)
    first = statistics.median(runs[parsed[0][0]])
    return {label: {"model": model, "options": extra,
                    "ms_per_frame": round(statistics.median(runs[label]), 1),
                    "ratio_to_first": round(statistics.median(runs[label]) / first, 3),
                    "runs_ms": [round(r, 1) for r in runs[label]]}
            for label, model, extra in parsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-out", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", action="append", default=None)
    parser.add_argument("--frames", type=int, default=221, help="the clip's first N frames "
                        "(221: all of it)")
    args = parser.parse_args(argv)
    x1, x3 = udacity_clips(args.out / "clips", args.frames)
    scratch = args.out / "scratch-models"
    rows = compare(x1, x3, args.variant or list(DEFAULT_VARIANTS), scratch, args.repeats)
    shutil.rmtree(scratch, ignore_errors=True)
    result = {"date": date.today().isoformat(), "clip": f"udacity_960x540, first {args.frames} "
              "frames", "quality": "fast",
              "repeats": args.repeats, "variants": rows}
    (args.out / "bench_models.json").write_text(json.dumps(result, indent=2))
    print("\n| variant | ms per frame (marginal, every output written) | x first |")
    print("|---|---|---|")
    for label, row in rows.items():
        print(f"| {label} | {row['ms_per_frame']} | {row['ratio_to_first']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
