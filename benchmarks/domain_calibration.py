"""Calibrate the out-of-domain warning (beam_seg/tables/domain.py) of a Cityscapes model.

Segments the shared sets at each --quality preset with `beam-seg segment` (so confidence
is exactly what a run writes: windows, scales and, for videos, temporal fusion included),
reads each input's mean confidence from the coverage tables, and prints per set and
preset the spread of the per-input means. The threshold sits halfway between the least
confident training-domain input (full-size Cityscapes: the aachen frames and the 2048x1024
aachen clip) and the most confident US set as a whole (the mean over its inputs of bdd100k,
the dashcam stills, the udacity clip); the margin is half that gap. Then it counts the
inputs of each set below the threshold. kitti and small Cityscapes frames (the 512x256 clip,
the 256x128 val frame) are measured and reported, not used to place the threshold.

    python benchmarks/domain_calibration.py --out bench-out/domain [--model NAME] [--every-nth-frame 3]

A re-run into the same --out resumes (finished inputs are not redone).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from beam_seg.commands.table import open_coverage  # noqa: E402
from beam_seg.job.launch import run  # noqa: E402
from beam_seg.models import DEFAULT_MODEL  # noqa: E402
from beam_seg.tables.domain import PRESETS, input_confidences  # noqa: E402

SHARED = Path(os.environ.get("BEAM_SEG_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"

# set name -> (role, inputs). Roles: "train" the model's training domain at its own size,
# "us" US footage (where the labels are poor), "other" measured and shown only.
SETS: dict[str, tuple[str, list[Path]]] = {
    "aachen stills": ("train", sorted((DATA / "cityscapes" / "train" / "aachen").glob("*_leftImg8bit.png"))),
    "aachen clip 2048": ("train", sorted((DATA / "videos").glob("cityscapes_aachen_*_2048x1024_*.mp4"))),
    "aachen clip 512": ("other", sorted((DATA / "videos").glob("cityscapes_aachen_*_512x256_*.mp4"))),
    "cityscapes val 256": ("other", sorted((DATA / "cityscapes" / "val").rglob("*_leftImg8bit.png"))),
    "bdd100k": ("us", sorted((DATA / "bdd100k").glob("*.jpg"))),
    "dashcam stills": ("us", sorted((DATA / "images" / "dashcam").glob("*.jpg"))),
    "udacity clip": ("us", [DATA / "videos" / "udacity_solidWhiteRight.mp4"]),
    "kitti": ("other", sorted((DATA / "kitti").glob("*_leftImg8bit.png"))),
}


def segment(out: Path, preset: str, model: str, every_nth: int) -> None:
    inputs = [str(p) for _, paths in SETS.values() for p in paths]
    with contextlib.redirect_stdout(io.StringIO()):  # the run's own summary
        code = run([*inputs, "--output", str(out), "--quality", preset, "--model", model,
                    "--every-nth-frame", str(every_nth)], save_main_session=False)
    if code != 0:
        raise RuntimeError(f"the {preset} run into {out} failed (exit {code})")


def per_set(out: Path) -> dict[str, list[float]]:
    """Set name -> the per-input mean confidences of the run in `out`."""
    with open_coverage(str(out)) as cov:
        by_source = {Path(i.source_uri).name: i.confidence for i in input_confidences(cov)}
    return {name: [by_source[p.name] for p in paths] for name, (_, paths) in SETS.items()}


def choose(values: dict[str, list[float]]) -> dict:
    inside = [v for name, vs in values.items() if SETS[name][0] == "train" for v in vs]
    us_means = {name: statistics.fmean(vs) for name, vs in values.items() if SETS[name][0] == "us"}
    low_in, high_us = min(inside), max(us_means.values())
    threshold = round((low_in + high_us) / 2, 2)
    return {"in_domain_mean": round(statistics.fmean(inside), 3),
            "least_in_domain": round(low_in, 3), "most_confident_us_set": max(us_means, key=us_means.get),
            "its_mean": round(high_us, 3), "threshold": threshold,
            "margin": round(min(low_in - threshold, threshold - high_us), 3),  # < 0: no gap
            "below": {name: sum(v < threshold for v in vs) for name, vs in values.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-out/domain", type=Path)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--every-nth-frame", type=int, default=3,
                        help="video frames kept (the udacity clip has 221)")
    args = parser.parse_args(argv)
    results = {"model": args.model, "every_nth_frame": args.every_nth_frame, "presets": {}}
    for preset in args.presets:
        out = args.out / preset
        segment(out, preset, args.model, args.every_nth_frame)
        values = per_set(out)
        print(f"\n{args.model} at --quality {preset}: mean confidence per input")
        chosen = choose(values)
        print(f"{'set':18} {'role':5} {'n':>3} {'min':>6} {'median':>6} {'max':>6} {'mean':>6} "
              f"below {chosen['threshold']:.2f}")
        for name, vs in values.items():
            print(f"{name:18} {SETS[name][0]:5} {len(vs):3d} {min(vs):6.3f} {statistics.median(vs):6.3f} "
                  f"{max(vs):6.3f} {statistics.fmean(vs):6.3f} {chosen['below'][name]:3d} of {len(vs)}")
        print(f"threshold {chosen['threshold']:.2f}: least confident training input "
              f"{chosen['least_in_domain']:.3f}, most confident US set {chosen['most_confident_us_set']} "
              f"(mean {chosen['its_mean']:.3f}); margin {chosen['margin']:+.3f}; mean on the "
              f"training domain {chosen['in_domain_mean']:.3f}")
        results["presets"][preset] = {"sets": {k: [round(v, 4) for v in vs] for k, vs in values.items()},
                                      **chosen}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "domain_calibration.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
