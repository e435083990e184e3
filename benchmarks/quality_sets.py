"""The annotated sets `make bench-quality` scores, and a disk cache of each frame's scores.

A set is a list of sequences (a still is a sequence of one frame; a clip is its frames in
order) with ground truth where a frame is annotated. Scores of a (model, settings, frame)
are kept under $BEAM_SEG_QUALITY_CACHE (default /tmp/quality-cache) with the seconds the
inference took, so that fusion and presets are compared again without running the model.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from beam_seg.commands.evaluate import confusion_matrix, scores
from beam_seg.labels import CITYSCAPES
from beam_seg.media import flow, video
from beam_seg.media.pixels import resize_nearest
from beam_seg.media.synthetic_video import CameraPath, make_clip, write_clip
from beam_seg.models.scoring import InferenceSettings, Segmentation, labels_of, score_frames
from beam_seg.models.tiling import Preset
from beam_seg.pipeline.records import FrameKey, WorkUnit
from beam_seg.pipeline.temporal import TemporalFuser, protected_ids
from beam_seg.scores import ScoreGrid

SHARED = Path(os.environ.get("BEAM_SEG_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA = SHARED / "data"
CACHE = Path(os.environ.get("BEAM_SEG_QUALITY_CACHE", "/tmp/quality-cache"))
ROOT = Path(__file__).resolve().parents[1]


def _code_version() -> str:
    """A digest of the code that makes scores: any change to it makes the cache miss."""
    digest = hashlib.sha256()
    for path in [*sorted((ROOT / "beam_seg" / "models").glob("*.py")), ROOT / "beam_seg/media/pixels.py"]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


CACHE_VERSION = _code_version()


@dataclass
class Sequence:
    """Frames in order (loaded on demand) and the ground truth of the annotated ones."""

    name: str
    length: int
    size: tuple[int, int]  # (width, height) of its frames
    frames: Callable[[], list[np.ndarray]]
    truth: dict[int, Callable[[], np.ndarray]]


@dataclass
class DataSet:
    name: str
    note: str
    sequences: list[Sequence] = field(default_factory=list)
    video: bool = False  # clips: fused in time like a video


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB") if "leftImg8bit" in path.name or path.suffix == ".jpg"
                      else Image.open(path))


def _stills(pairs: list[tuple[Path, Path]]) -> list[Sequence]:
    return [Sequence(image.name, 1, Image.open(image).size, lambda image=image: [_read(image)],
                     {0: lambda truth=truth: _read(truth)}) for image, truth in pairs]


def scaled_stills(pairs: list[tuple[Path, Path]], factor: float,
                  aspect: float | None = None) -> list[Sequence]:
    """Stills scaled up (bicubic) by `factor`, scored against their own ground truth (labels
    are taken back to its size): the same scenes with objects at more pixels, as 1080p and
    4K cameras give them, where a preset's scales chosen at 720p must still hold. `aspect`:
    first cropped to the middle rows of that width:height (an ultrawide camera's frame)."""
    out = []
    for image, truth in pairs:
        with Image.open(image) as opened:
            width, height = opened.size
        rows = min(height, round(width / aspect)) if aspect else height
        top = (height - rows) // 2
        size = (round(width * factor), round(rows * factor))
        frames = functools.partial(_scaled, image, top, rows, size)
        truth_of = functools.partial(_rows_of, truth, top, rows)
        out.append(Sequence(f"{image.name}@{size[0]}x{size[1]}", 1, size, frames, {0: truth_of}))
    return out


def _scaled(image: Path, top: int, rows: int, size: tuple[int, int]) -> list[np.ndarray]:
    picture = Image.open(image).convert("RGB")
    return [np.asarray(picture.crop((0, top, picture.width, top + rows)).resize(size, Image.BICUBIC))]


def _rows_of(truth: Path, top: int, rows: int) -> np.ndarray:
    return _read(truth)[top:top + rows]


def still_pairs(name: str) -> list[tuple[Path, Path]]:
    """(picture, trainIds ground truth) of a shared still set."""
    if name == "bdd100k":
        return [(p, p.with_name(p.stem + "_trainIds.png")) for p in sorted((DATA / "bdd100k").glob("*.jpg"))]
    folder = {"aachen": DATA / "cityscapes/train/aachen", "kitti": DATA / "kitti",
              "cityscapes-val": DATA / "cityscapes/val"}[name]
    return [(p, p.with_name(p.name.replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png")))
            for p in sorted(folder.rglob("*_leftImg8bit.png"))]


def decode(path: Path) -> list[np.ndarray]:
    info = video.probe(str(path))
    seg = video.plan_segments(info, info.frame_count)[0]
    return [rgb.copy() for rgb in video.decode_frames(str(path), info, seg)]


def annotated_clip(path: Path, truth: Path, index: int = 19, width: int | None = None,
                   crop_width: int | None = None) -> Sequence:
    """A real clip with one annotated frame; `width`: its frames downscaled (area) to that
    width first, like the 1024x512 held-out Cityscapes clips of the issue; `crop_width`:
    then the middle that many pixels of each frame (and the same part of the truth), so
    that a 2:1 clip becomes a 16:9 one, the shape key frames apply to, with real motion."""
    info = video.probe(str(path))
    length = info.frame_count
    if width is None:
        return Sequence(path.name, length, (info.width, info.height), lambda: decode(path),
                        {index: lambda: _read(truth)})
    height = round(info.height * width / info.width)
    left = (width - crop_width) // 2 if crop_width else 0
    right = left + crop_width if crop_width else width

    def frames() -> list[np.ndarray]:
        out = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in decode(path)]
        return [np.ascontiguousarray(f[:, left:right]) for f in out]

    def truth_of() -> np.ndarray:
        full = _read(truth)
        scale = full.shape[1] / width
        return np.ascontiguousarray(full[:, round(left * scale):round(right * scale)])

    name = f"{path.name}@{width}" + (f"[{crop_width}]" if crop_width else "")
    return Sequence(name, length, (right - left, height), frames, {index: truth_of})


def synthetic_clip(image: Path, truth: Path, width: int, height: int,
                   camera: CameraPath = CameraPath(frames=12)) -> Sequence:
    """A clip over an annotated still, written once with ffmpeg and decoded (so it carries
    the codec's loss, as real footage does); its ground truth on every frame."""
    tag = hashlib.sha256(repr((image.name, width, height, camera)).encode()).hexdigest()[:10]
    clip, truths = CACHE / "clips" / f"{image.stem}-{tag}.mp4", CACHE / "clips" / f"{image.stem}-{tag}.npz"
    if not truths.exists():
        clip.parent.mkdir(parents=True, exist_ok=True)
        frames, gts = make_clip(_read(image), _read(truth), width, height, camera)
        write_clip(frames, str(clip))
        np.savez_compressed(truths, truth=np.stack(gts))

    def truth_of(i: int) -> np.ndarray:
        return np.load(truths)["truth"][i]

    return Sequence(f"{image.name} ({tag})", camera.frames, (width, height), lambda: decode(clip),
                    {i: (lambda i=i: truth_of(i)) for i in range(camera.frames)})


def synthetic_camera(frames: int) -> CameraPath:
    """The harness's camera over a still: a slow zoom and pan, shaken for three frames in the
    middle."""
    return CameraPath(frames=frames, shake=tuple(range(frames // 2 - 1, frames // 2 + 2)))


def data_sets(synthetic_size: tuple[int, int] = (960, 540), synthetic_frames: int = 12,
              names: list[str] | None = None) -> list[DataSet]:
    """Every shared set with ground truth (or those `names`); aachen (and the clips cut from
    its scenes) are Cityscapes training frames, which the model learnt from: marked so."""
    camera = synthetic_camera(synthetic_frames)
    videos, aachen = DATA / "videos", DATA / "cityscapes/train/aachen"
    sets = [
        DataSet("aachen", "6 Cityscapes TRAINING frames, 2048x1024", _stills(still_pairs("aachen"))),
        DataSet("kitti", "5 KITTI frames, 1224x370", _stills(still_pairs("kitti"))),
        DataSet("bdd100k", "16 US dashcam frames, 1280x720 (main dev set)", _stills(still_pairs("bdd100k"))),
        DataSet("cityscapes-val", "1 val frame, 256x128", _stills(still_pairs("cityscapes-val"))),
        DataSet("bdd100k@4k", "the bdd100k frames scaled up 3x to 3840x2160",
                scaled_stills(still_pairs("bdd100k"), 3)),
        DataSet("kitti@2x", "the kitti frames scaled up 2x to 2448x740 (3.3:1)",
                scaled_stills(still_pairs("kitti"), 2)),
        DataSet("bdd100k@21:9", "the bdd100k frames cropped to 21:9 and scaled up 2x to 2560x1098, "
                "as ultrawide dashcams give them", scaled_stills(still_pairs("bdd100k"), 2, 7 / 3)),
        DataSet("clip-seq0001", "30 frames 512x256, frame 19 annotated (training scene)", [annotated_clip(
            videos / "cityscapes_aachen_seq0001_512x256_17fps.mp4",
            aachen / "aachen_000001_000019_gtFine_labelTrainIds.png")], video=True),
        DataSet("clip-seq0000", "30 frames 2048x1024, frame 19 annotated (training scene)", [annotated_clip(
            videos / "cityscapes_aachen_seq0000_2048x1024_17fps.mp4",
            aachen / "aachen_000000_000019_gtFine_labelTrainIds.png")], video=True),
        DataSet("clip-seq0000@1024", "the same clip downscaled to 1024x512 (training scene)", [annotated_clip(
            videos / "cityscapes_aachen_seq0000_2048x1024_17fps.mp4",
            aachen / "aachen_000000_000019_gtFine_labelTrainIds.png", width=1024)], video=True),
        DataSet("clip-seq0000@1024-16:9", "its middle 912x512: real motion at 16:9, where key "
                "frames apply (training scene)", [annotated_clip(
                    videos / "cityscapes_aachen_seq0000_2048x1024_17fps.mp4",
                    aachen / "aachen_000000_000019_gtFine_labelTrainIds.png", width=1024,
                    crop_width=912)], video=True),
    ]
    width, height = synthetic_size
    for name, note in (("bdd100k", "16"), ("kitti", "5"), ("aachen", "6 (TRAINING frames)")):
        if names is not None and f"synthetic-{name}" not in names:
            continue
        sets.append(DataSet(f"synthetic-{name}", f"{note} clips of {synthetic_frames} frames "
                            f"{width}x{height}, every frame annotated",
                            [synthetic_clip(i, t, width, height, camera) for i, t in still_pairs(name)],
                            video=True))
    return [s for s in sets if names is None or s.name in names]


# --------------------------------------------------------------------------- score cache


def _key(model_name: str, settings, sequence: str, index: int) -> Path:
    text = repr((CACHE_VERSION, model_name, settings, sequence, index))
    return CACHE / "scores" / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.npz"


def _save(path: Path, seg: Segmentation, seconds: float, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    if seg.scores is not None:
        g = seg.scores
        np.savez(tmp, probs=g.probs, grid=np.array([g.x0, g.y0, g.dx, g.dy]), raster=np.array(seg.raster),
                 seconds=seconds, size=np.array(size))
    else:
        np.savez(tmp, labels=seg.labels, raster=np.array(seg.raster), seconds=seconds, size=np.array(size))
    tmp.rename(path)


def _load(path: Path) -> tuple[Segmentation, float, tuple[int, int]]:
    with np.load(path) as data:
        raster = tuple(int(v) for v in data["raster"])
        size = tuple(int(v) for v in data["size"])
        if "probs" in data:
            x0, y0, dx, dy = (float(v) for v in data["grid"])
            seg = Segmentation(None, ScoreGrid(data["probs"], x0, y0, dx, dy), raster)
        else:
            seg = Segmentation(data["labels"], None, raster)
        return seg, float(data["seconds"]), size


def _as_scales(model: Callable[[], object], settings: InferenceSettings, size: tuple[int, int]):
    """What a preset does to frames of this size (its working scales) for fixed-size models,
    so that presets that agree there share cached scores."""
    if not isinstance(settings.tiles, Preset):
        return settings
    spec = model().describe().input_spec
    if not spec.fixed_size:
        return settings
    return settings.resize_mode, settings.tiles.scales(*size, spec.width, spec.height)


def scores_of(model: Callable[[], object], model_name: str, settings: InferenceSettings,
              sequence: Sequence) -> list[tuple[Segmentation, float, tuple[int, int]]]:
    """(segmentation without labels, inference seconds, source size) of every frame of
    a sequence, from the cache where it has them; `model()` gives the model (loaded only when needed)."""
    paths = [_key(model_name, _as_scales(model, settings, sequence.size), sequence.name, i)
             for i in range(sequence.length)]
    if not all(p.exists() for p in paths):
        frames = sequence.frames()
        for path, frame in zip(paths, frames, strict=True):
            if not path.exists():
                start = time.perf_counter()
                seg = score_frames(model(), [frame], settings, labels=False)[0]
                _save(path, seg, time.perf_counter() - start, (frame.shape[1], frame.shape[0]))
    return [_load(p) for p in paths]


# --------------------------------------------------------------------------- scoring


def fused_labels(frames: list[np.ndarray], segs: list[Segmentation], k: int,
                 keyframes: int = 1, phase: int = 0) -> tuple[list[np.ndarray], float]:
    """Label maps of a clip's frames through the pipeline's own `TemporalFuser` (K=0: each
    frame alone; frame i a key frame where (i + phase) % keyframes == 0), and the seconds
    fusion took. The sets' labels are Cityscapes' (`benchmarks/quality.py` runs only such
    models)."""
    fuser, out = TemporalFuser(k, protected_ids(CITYSCAPES.names)), []
    unit = WorkUnit("clip", "clip", "video")
    start = time.perf_counter()
    for i, (rgb, seg) in enumerate(zip(frames, segs, strict=True)):
        out += fuser.add(FrameKey(unit, i, 0.0), rgb, seg, (i + phase) % keyframes == 0)
    out += fuser.flush()
    return [f.labels for f in out], time.perf_counter() - start


def compensated_flicker(frames: list[np.ndarray], labels: list[np.ndarray]) -> float:
    """Mean share of pixels whose label differs from the previous frame's warped onto it by
    flow (what changes beyond the motion), over a clip's consecutive pairs."""
    greys = [flow.small_grey(f) for f in frames]
    return float(np.mean([flow.flicker(labels[t], labels[t - 1], flow.dense_flow(greys[t], greys[t - 1]))
                          for t in range(1, len(labels))]))


def measure(model: Callable[[], object], model_name: str, dataset: DataSet,
            settings: InferenceSettings, k: int = 0, classes: int = 19, keyframes: int = 1) -> dict:
    """mIoU and pixel accuracy (one confusion matrix over every annotated frame, at ground-truth
    resolution, as `beam-seg eval` counts), frames/s of inference (plus fusion for clips) and,
    for clips, the flow-compensated flicker. `keyframes` N: clips take `settings` on every
    Nth frame and one whole-frame pass on the others, as --keyframes does, at each of the N
    phases of the key frames in turn, pooled: which frames are key frames moves a clip's
    few annotated frames' figures more than most settings do (seq0000@1024's one annotated
    frame, the default against `--temporal 0`: -0.070, -0.010, -0.011 and -0.134 by phase)."""
    confusion = np.zeros((classes, classes + 1), np.int64)
    seconds, frames_done, flickers = 0.0, 0, []
    phases = keyframes if dataset.video else 1  # key frames are a video's: stills take `settings`
    for sequence in dataset.sequences:
        results = scores_of(model, model_name, settings, sequence)
        whole = (scores_of(model, model_name, InferenceSettings(settings.resize_mode, None), sequence)
                 if phases > 1 else results)
        frames = sequence.frames() if dataset.video else []
        for phase in range(phases):
            chosen = [r if (i + phase) % keyframes == 0 else whole[i] for i, r in enumerate(results)]
            segs = [seg for seg, _, _ in chosen]
            seconds += sum(t for _, t, _ in chosen)
            frames_done += len(segs)
            if dataset.video:
                labels, fuse_seconds = fused_labels(frames, segs, k, keyframes, phase)
                seconds += fuse_seconds
                flickers.append(compensated_flicker(frames, labels))
            else:
                labels = [seg.labels if seg.labels is not None else labels_of(seg.scores, *size, seg.raster)
                          for seg, _, size in chosen]
            for index, truth_of in sequence.truth.items():
                truth = truth_of()
                pred = labels[index]
                if pred.shape != truth.shape:
                    pred = resize_nearest(pred, truth.shape[1], truth.shape[0])
                confusion += confusion_matrix(truth, pred, classes)
    result = scores(confusion, [str(c) for c in range(classes)])
    row = {"miou": round(result["miou"], 4), "pixel_accuracy": round(result["pixel_accuracy"], 4),
           "frames_per_s": round(frames_done / seconds, 2) if seconds else None}
    if flickers:
        row["flicker"] = round(float(np.mean(flickers)), 4)
    return row
