"""`make bench-quality`: mIoU, pixel accuracy and speed of each --quality preset, then
temporal fusion on video (benchmarks/temporal_quality.py).

Runs `beam-seg segment --quality P` on the annotated Cityscapes frames, scores the run
with `beam-seg eval`'s own function, and times the preset's inference (sliding windows
included) on the same frames, median of `--repeats`.

    python benchmarks/quality.py --out bench-out [--ground-truth DIR] [--repeats 3] [--no-temporal]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from beam_seg.commands.evaluate import evaluate  # noqa: E402
from beam_seg.models import DEFAULT_MODEL, load_label_set, load_model, resolve  # noqa: E402
from beam_seg.models.inference import QUALITY_PRESETS, InferenceSettings, segment_frames  # noqa: E402
from pipelines.segment import run  # noqa: E402

SHARED = Path(os.environ.get("BEAM_SEG_SHARED", ROOT.parent / "shared"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-out", type=Path)
    parser.add_argument("--ground-truth", type=Path,
                        default=SHARED / "data" / "cityscapes" / "train" / "aachen")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--no-temporal", action="store_true", help="skip the video part")
    args = parser.parse_args(argv)
    images = sorted(args.ground_truth.rglob("*_leftImg8bit.png"))
    if not images:
        print(f"no *_leftImg8bit.png under {args.ground_truth}", file=sys.stderr)
        return 2
    resolved = resolve(args.model)
    model = load_model(resolved)
    model.num_classes = load_label_set(resolved.labels).num_classes
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in images]
    height, width = frames[0].shape[:2]
    results = {"model": args.model, "frames": len(images), "frame_size": f"{width}x{height}",
               "command": "make bench-quality", "presets": {}}
    for preset, tiles in QUALITY_PRESETS.items():
        out = args.out / f"quality-{preset}"
        code = run([*map(str, images), "--output", str(out), "--quality", preset, "--model", args.model,
                    "--overwrite"], save_main_session=False)
        if code != 0:
            raise RuntimeError(f"the {preset} run failed")
        scores = evaluate(str(out), str(args.ground_truth))
        settings = InferenceSettings(tiles=tiles)
        segment_frames(model, frames[:1], settings)  # warm-up
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for frame in frames:
                segment_frames(model, [frame], settings)
            seconds.append((time.perf_counter() - start) / len(frames))
        windows = count_windows(model, frames[0], settings)
        results["presets"][preset] = {
            "miou": round(scores["miou"], 4), "pixel_accuracy": round(scores["pixel_accuracy"], 4),
            "windows_per_frame": windows, "frames_per_s": round(1 / statistics.median(seconds), 2),
        }
        print(f"{preset}: {results['presets'][preset]}", file=sys.stderr, flush=True)
    print(f"\n| preset | windows per {width}x{height} frame | mIoU | pixel accuracy | frames/s |")
    print("|---|---|---|---|---|")
    for preset, r in results["presets"].items():
        print(f"| `{preset}` | {r['windows_per_frame']} | {r['miou']:.3f} | {r['pixel_accuracy']:.3f} "
              f"| {r['frames_per_s']:.2f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps(results, indent=2))
    if not args.no_temporal:
        import temporal_quality

        return temporal_quality.main(["--out", str(args.out)])
    return 0


def count_windows(model, frame: np.ndarray, settings: InferenceSettings) -> int:
    """Model passes one frame takes at these settings (every scale's windows)."""
    calls = []
    predict = model.predict
    model.predict = lambda batch: calls.append(len(batch)) or predict(batch)
    try:
        segment_frames(model, [frame], settings)
    finally:
        model.predict = predict
    return sum(calls)


if __name__ == "__main__":
    sys.exit(main())
