"""`make bench-quality`: mIoU, pixel accuracy and frames/s of every --quality preset of every
registry model whose file is on this machine, on every shared set with ground truth.

Sets (benchmarks/quality_sets.py): aachen (Cityscapes TRAINING frames, marked so), kitti,
bdd100k (the main dev set), the Cityscapes val frame, the two annotated Cityscapes clips
and synthetic clips made from the bdd100k, kitti and aachen stills (every frame annotated).
Clips are fused in time as the pipeline fuses videos (the preset's --temporal K, and K=0
beside it), with their flow-compensated flicker. Scores are cached per frame under
$BEAM_SEG_QUALITY_CACHE (default /tmp/quality-cache): frames/s is the inference time
measured when a frame was first scored (one thread), plus fusion.

    python benchmarks/quality.py --out bench-out [--sets bdd100k,kitti] [--models NAME,...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import quality_sets  # noqa: E402

from beam_seg.config import RunConfig  # noqa: E402
from beam_seg.models import load_label_set, load_model, resolve  # noqa: E402
from beam_seg.models.anysize import SIZE_PRESETS  # noqa: E402
from beam_seg.models.catalog import REGISTRY  # noqa: E402
from beam_seg.models.registry import MODEL_DIR_ENV, cache_dir  # noqa: E402
from beam_seg.models.scoring import QUALITY_PRESETS, InferenceSettings  # noqa: E402


def local_models() -> tuple[list[str], list[str]]:
    """Registry models with Cityscapes labels whose file is on this machine, and a line for
    each one skipped."""
    found, skipped = [], []
    for name, spec in REGISTRY.items():
        folders = [os.environ.get(MODEL_DIR_ENV, ""), cache_dir()]
        if spec.labels != "cityscapes":
            skipped.append(f"{name}: skipped, its labels are not Cityscapes' (the sets' ground truth)")
        elif not any(folder and Path(folder, spec.filename).exists() for folder in folders):
            skipped.append(f"{name}: skipped, {spec.filename} is not on this machine")
        else:
            found.append(name)
    return found, skipped


KEYFRAMES_ROW = 4


def settings_rows(preset: str, dataset) -> list[tuple[str, InferenceSettings, int, int]]:
    """(row label, settings, K, key frames N) of a preset: stills once; clips as the pipeline
    runs them by default (with the preset's key frames where they apply), every frame in
    full, and --temporal 0."""
    # models of any size take the preset's working sizes, as the pipeline gives them
    settings = InferenceSettings(tiles=QUALITY_PRESETS[preset], sizes=SIZE_PRESETS[preset])
    if not dataset.video:
        return [("", settings, 0, 1)]
    cfg = RunConfig(output="unused", quality=preset)
    size = dataset.sequences[0].size
    k, n = cfg.temporal_frames(size), cfg.keyframe_interval(size)
    rows = [(f"--temporal {k} --keyframes {n} (default)", settings, k, n)] if n > 1 else []
    if k:
        base = RunConfig(output="unused", quality=preset, keyframes=1).temporal_frames(size)
        rows.append((f"--temporal {base}" + (" --keyframes 1" if n > 1 else ""), settings, base, 1))
    if n == 1 and k:  # key frames on demand, at the N measured in docs/quality.md
        keyed = RunConfig(output="unused", quality=preset, keyframes=KEYFRAMES_ROW)
        rows.append((f"--keyframes {KEYFRAMES_ROW}", settings, keyed.temporal_frames(size), KEYFRAMES_ROW))
    return [*rows, ("--temporal 0", settings, 0, 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-out", type=Path)
    parser.add_argument("--sets", default=None, help="comma-separated set names (default: all)")
    parser.add_argument("--models", default=None, help="comma-separated registry names (default: all local)")
    parser.add_argument("--presets", default=",".join(QUALITY_PRESETS))
    args = parser.parse_args(argv)
    models, skipped = local_models()
    for line in skipped:
        print(line, file=sys.stderr)
    if args.models:
        models = [m for m in args.models.split(",") if m in models]
    sets = quality_sets.data_sets(names=args.sets.split(",") if args.sets else None)
    results = {"date": date.today().isoformat(), "command": "make bench-quality", "models": {}}
    for name in models:
        loaded = {}

        def model(name=name, loaded=loaded):
            if "model" not in loaded:
                resolved = resolve(name)
                loaded["model"] = load_model(resolved, 1, 1, load_label_set(resolved.labels).num_classes)
            return loaded["model"]

        rows = []
        for dataset in sets:
            for preset in args.presets.split(","):
                for label, settings, k, n in settings_rows(preset, dataset):
                    row = {"set": dataset.name, "note": dataset.note, "preset": preset, "variant": label,
                           **quality_sets.measure(model, name, dataset, settings, k, keyframes=n)}
                    rows.append(row)
                    print(f"{name} {row}", file=sys.stderr, flush=True)
        results["models"][name] = rows
        print(table(name, rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps(results, indent=2))
    return 0


def table(model: str, rows: list[dict]) -> str:
    lines = [f"\n### `{model}`\n", "| set | preset | mIoU | pixel accuracy | frames/s | flicker |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        flicker = f"{r['flicker']:.4f}" if "flicker" in r else "-"
        preset = f"`{r['preset']}` {r['variant']}".strip()
        lines.append(f"| {r['set']} | {preset} | {r['miou']:.3f} | {r['pixel_accuracy']:.3f} "
                     f"| {r['frames_per_s']} | {flicker} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
