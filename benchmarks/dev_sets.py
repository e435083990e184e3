"""mIoU of a model's presets on the shared dev sets, in process (no pipeline): the numbers
behind docs/models.md's table and the any-size presets (`models/anysize.py`).

    python benchmarks/dev_sets.py --model efficientvit-b0-cityscapes [--presets fast,balanced,high]
        [--sets bdd100k,kitti,cityscapes-val,aachen] [--json OUT.json] [--labels cityscapes]

mIoU as `beam-seg eval` computes it (one confusion matrix per set, over the classes present
in its ground truth; `evaluate.confusion_matrix` and `evaluate.scores`). aachen holds
Cityscapes *training* frames, which both models learnt from: never tune on it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from beam_seg.commands.evaluate import confusion_matrix, scores  # noqa: E402
from beam_seg.labels import BUILTIN  # noqa: E402
from beam_seg.models import DEFAULT_MODEL, load_label_set, load_model, resolve  # noqa: E402
from beam_seg.models.anysize import SIZE_PRESETS, SizePreset  # noqa: E402
from beam_seg.models.scoring import QUALITY_PRESETS, InferenceSettings, segment_frames  # noqa: E402

SHARED = Path(os.environ.get("BEAM_SEG_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
# name -> (image glob root, glob, image suffix, ground-truth suffix)
SETS = {
    "bdd100k": (DATA / "bdd100k", "*.jpg", ".jpg", "_trainIds.png"),
    "kitti": (DATA / "kitti", "*_leftImg8bit.png", "_leftImg8bit.png", "_gtFine_labelTrainIds.png"),
    "cityscapes-val": (DATA / "cityscapes" / "val", "*/*_leftImg8bit.png", "_leftImg8bit.png",
                       "_gtFine_labelTrainIds.png"),
    "aachen": (DATA / "cityscapes" / "train", "*/*_leftImg8bit.png", "_leftImg8bit.png",
               "_gtFine_labelTrainIds.png"),
}


def pairs(name: str) -> list[tuple[Path, Path]]:
    root, pattern, suffix, gt_suffix = SETS[name]
    return [(p, p.with_name(p.name[: -len(suffix)] + gt_suffix)) for p in sorted(root.glob(pattern))]


def settings_for(preset: str) -> InferenceSettings:
    """What `beam-seg segment --quality PRESET` uses for a still."""
    return InferenceSettings(tiles=QUALITY_PRESETS[preset], sizes=SIZE_PRESETS[preset])


def miou(model, settings: InferenceSettings, set_name: str) -> tuple[float, float]:
    """(mIoU, seconds per frame) of one set."""
    confusion = np.zeros((19, 20), np.int64)
    elapsed = 0.0
    for image, truth in pairs(set_name):
        rgb = np.asarray(Image.open(image).convert("RGB"))
        start = time.perf_counter()
        (labels,) = segment_frames(model, [rgb], settings)
        elapsed += time.perf_counter() - start
        confusion += confusion_matrix(np.asarray(Image.open(truth)), labels, 19)
    return scores(confusion, BUILTIN["cityscapes"].names)["miou"], elapsed / len(pairs(set_name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--labels", help="label set of a model given by path (e.g. cityscapes)")
    parser.add_argument("--presets", default="fast,balanced,high")
    parser.add_argument("--sets", default="bdd100k,kitti,cityscapes-val,aachen")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--try", dest="trial", action="append", default=[], metavar="SCALES[:flip]",
                        help="also score a candidate any-size preset, e.g. 1,1.25:flip")
    args = parser.parse_args(argv)
    resolved = resolve(args.model, args.labels)
    model = load_model(resolved, args.threads, 1, load_label_set(resolved.labels).num_classes)
    results: dict = {"model": args.model, "presets": {}}
    candidates = {p: settings_for(p) for p in args.presets.split(",") if p}
    for trial in args.trial:
        scales, _, flip = trial.partition(":")
        candidates[trial] = InferenceSettings(sizes=SizePreset(
            tuple(float(v) for v in scales.split(",")), flip=flip == "flip"))
    for preset, settings in candidates.items():
        row = results["presets"][preset] = {}
        for set_name in args.sets.split(","):
            value, seconds = miou(model, settings, set_name)
            row[set_name] = {"miou": round(value, 4), "s_per_frame": round(seconds, 3)}
            print(f"{args.model} {preset:9} {set_name:15} mIoU {value:.4f}  {seconds:.2f} s/frame",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
