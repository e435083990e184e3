"""The temporal part of `make bench-quality`: flicker (raw and flow-compensated), mIoU at
the annotated frame and frames/s for --temporal 0/1/2 on real driving clips.

Every frame goes through the preset's inference once; the fusion of each K then runs the
pipeline's own `TemporalFuser` on those scores, so the K differ only by fusion. frames/s
counts inference plus fusion and labels (median of `repeats` fusion runs).

    python benchmarks/temporal_quality.py [--preset balanced] [--out bench-out]
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

from beam_seg.commands.evaluate import confusion_matrix, scores  # noqa: E402
from beam_seg.media import flow, video  # noqa: E402
from beam_seg.media.pixels import resize_nearest  # noqa: E402
from beam_seg.models import DEFAULT_MODEL, load_label_set, load_model, resolve  # noqa: E402
from beam_seg.models.scoring import QUALITY_PRESETS, InferenceSettings, score_frames  # noqa: E402
from beam_seg.pipeline.records import FrameKey, WorkUnit  # noqa: E402
from beam_seg.pipeline.temporal import TemporalFuser  # noqa: E402

SHARED = Path(os.environ.get("BEAM_SEG_SHARED", ROOT.parent / "shared"))
CLIPS = [  # (clip, ground truth of one frame or None, that frame's index)
    (SHARED / "data/videos/cityscapes_aachen_seq0000_2048x1024_17fps.mp4",
     SHARED / "data/cityscapes/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png", 19),
    (SHARED / "data/videos/cityscapes_aachen_seq0001_512x256_17fps.mp4",
     SHARED / "data/cityscapes/train/aachen/aachen_000001_000019_gtFine_labelTrainIds.png", 19),
    (SHARED / "data/videos/udacity_solidWhiteRight.mp4", None, None),
]


def decode(path: Path, limit: int | None) -> list[np.ndarray]:
    info = video.probe(str(path))
    seg = video.plan_segments(info, info.frame_count)[0]
    frames = []
    for rgb in video.decode_frames(str(path), info, seg):
        frames.append(rgb.copy())
        if limit and len(frames) >= limit:
            break
    return frames


def fuse(frames, segs, k: int) -> list:
    """Label maps and flickers of every frame with K neighbours (K=0: each frame alone)."""
    fuser, out = TemporalFuser(k), []
    unit = WorkUnit("clip", "clip", "video")
    for i, (rgb, seg) in enumerate(zip(frames, segs, strict=True)):
        out += fuser.add(FrameKey(unit, i, 0.0), rgb, seg)
    return out + fuser.flush()


def measure(frames, segs, k: int, seconds_infer: float, gt: np.ndarray | None, gt_index: int | None,
            repeats: int) -> dict:
    times, fused = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        fused = fuse(frames, segs, k)
        times.append(time.perf_counter() - start)
    labels = [f.labels for f in fused]
    greys = [flow.small_grey(f) for f in frames]
    raw, compensated = [], []
    for t in range(1, len(labels)):
        if flow.is_cut(greys[t - 1], greys[t], flow.dense_flow(greys[t - 1], greys[t])):
            continue
        raw.append(float(np.mean(labels[t] != labels[t - 1])))
        compensated.append(flow.flicker(labels[t], labels[t - 1], flow.dense_flow(greys[t], greys[t - 1])))
    result = {"k": k, "flicker_raw": round(float(np.mean(raw)), 4),
              "flicker_compensated": round(float(np.mean(compensated)), 4),
              "frames_per_s": round(len(frames) / (seconds_infer + statistics.median(times)), 3),
              "fusion_ms_per_frame": round(1000 * statistics.median(times) / len(frames), 1)}
    if gt is not None:
        truth = resize_nearest(gt, labels[gt_index].shape[1], labels[gt_index].shape[0])
        conf = confusion_matrix(truth, labels[gt_index], 19)
        result["miou"] = round(scores(conf, [str(i) for i in range(19)])["miou"], 4)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="balanced", choices=tuple(QUALITY_PRESETS))
    parser.add_argument("--out", default="bench-out", type=Path)
    parser.add_argument("--max-frames", type=int, default=None, help="first N frames of each clip")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    resolved = resolve(DEFAULT_MODEL)
    model = load_model(resolved, num_threads=1, num_classes=load_label_set(resolved.labels).num_classes)
    settings = InferenceSettings(tiles=QUALITY_PRESETS[args.preset])
    results = {"preset": args.preset, "command": "make bench-quality", "clips": {}}
    for clip, gt_path, gt_index in CLIPS:
        frames = decode(clip, args.max_frames)
        start = time.perf_counter()
        segs = score_frames(model, frames, settings, labels=False)
        seconds_infer = time.perf_counter() - start
        gt = np.asarray(Image.open(gt_path)) if gt_path else None
        rows = [measure(frames, segs, k, seconds_infer, gt, gt_index, args.repeats) for k in (0, 1, 2)]
        results["clips"][clip.name] = {"frames": len(frames), "rows": rows}
        print(f"{clip.name}: {rows}", file=sys.stderr, flush=True)
    print(f"\n| clip | --temporal | flicker (raw) | flicker (flow-compensated) | mIoU at the annotated frame "
          f"| frames/s ({args.preset}, 1 thread) |")
    print("|---|---|---|---|---|---|")
    for name, clip in results["clips"].items():
        for r in clip["rows"]:
            miou = f"{r['miou']:.3f}" if "miou" in r else "-"
            print(f"| `{name}` | {r['k']} | {r['flicker_raw']:.4f} | {r['flicker_compensated']:.4f} | {miou} "
                  f"| {r['frames_per_s']:.2f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "temporal.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
