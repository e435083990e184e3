"""`make bench`'s model rows: the pipeline's cost per frame for several models (or layouts) at
`--quality fast` on the udacity clip, every output written, measured interleaved in one run.

Each variant is `LABEL=MODEL[ EXTRA SEGMENT OPTIONS]`; its figure is the marginal cost per
frame between the clip and the same clip three times over (start-up cancels out), median of
`--repeats`, and its ratio to the first variant.

On a shared machine a whole run sees other jobs come and go, so the models are also timed
**paired, frame by frame** in one process (`paired`): each frame through each model in turn
(one thread each, as each of the pipeline's threads has), with what every frame writes
(label PNG, overlay JPEG, class counts; the video encode is the same for every model and
left out), median per-frame cost and the median of the per-frame ratios.

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

from bench import UDACITY, ffmpeg, first_frames, run_pipeline  # noqa: E402

from beam_seg.media import video  # noqa: E402
from beam_seg.models import DEFAULT_MODEL  # noqa: E402

DEFAULT_VARIANTS = (
    f"default fast={DEFAULT_MODEL}",
    "efficientvit-b0 fast=efficientvit-b0-cityscapes",
    # made into the cache from the float file by benchmarks/quantize_b0.py (`make bench` does)
    "efficientvit-b0 int8 fast=efficientvit-b0-cityscapes-int8",
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


def paired(models: list[str], frames: list, rounds: int = 3) -> dict:
    """{model: ms per frame} and each model's median per-frame ratio to the first."""
    import time

    import numpy as np

    from beam_seg.config import RunConfig
    from beam_seg.labels import CITYSCAPES
    from beam_seg.media import render
    from beam_seg.models import load_label_set, load_model, resolve
    from beam_seg.models.scoring import segment_frames
    from beam_seg.tables import coverage

    loaded = {}
    for name in models:
        resolved = resolve(name)
        loaded[name] = load_model(resolved, 1, 1, load_label_set(resolved.labels).num_classes)
    settings = RunConfig(output="unused", quality="fast").inference_settings()["video"]

    def frame_cost(model, frame) -> float:
        start = time.perf_counter()
        (labels,) = segment_frames(model, [frame], settings)
        render.label_png_bytes(labels, CITYSCAPES)
        render.encode_image(render.overlay(frame, labels, CITYSCAPES.palette, 0.5), "jpg")
        coverage.class_counts(labels, 19)
        return time.perf_counter() - start

    for name in models:
        frame_cost(loaded[name], frames[0])  # warm-up
    costs: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for index, frame in enumerate(frames):
            order = models if index % 2 == 0 else models[::-1]
            for name in order:
                costs[name].append(frame_cost(loaded[name], frame))
    first = np.array(costs[models[0]])
    return {name: {"ms_per_frame": round(1000 * float(np.median(c)), 1),
                   "ratio_to_first": round(float(np.median(np.array(c) / first)), 3)}
            for name, c in costs.items()}


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
    parser.add_argument("--paired-frames", type=int, default=20)
    args = parser.parse_args(argv)
    x1, x3 = udacity_clips(args.out / "clips", args.frames)
    models = list(dict.fromkeys(parse_variant(v)[1] for v in args.variant or DEFAULT_VARIANTS))
    pairs = paired(models, first_frames(x1, args.paired_frames))
    print("\n| model | ms per frame, paired (one thread) | x first |\n|---|---|---|")
    for name, row in pairs.items():
        print(f"| {name} | {row['ms_per_frame']} | {row['ratio_to_first']:.2f} |", flush=True)
    scratch = args.out / "scratch-models"
    rows = compare(x1, x3, args.variant or list(DEFAULT_VARIANTS), scratch, args.repeats)
    shutil.rmtree(scratch, ignore_errors=True)
    result = {"date": date.today().isoformat(), "clip": f"udacity_960x540, first {args.frames} "
              "frames", "quality": "fast",
              "repeats": args.repeats, "variants": rows, "paired": pairs}
    (args.out / "bench_models.json").write_text(json.dumps(result, indent=2))
    print("\n| variant | ms per frame (marginal, every output written) | x first |")
    print("|---|---|---|")
    for label, row in rows.items():
        print(f"| {label} | {row['ms_per_frame']} | {row['ratio_to_first']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
