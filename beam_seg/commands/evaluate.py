"""`beam-seg eval`: score a run's label maps against ground truth (IoU, mIoU, pixel accuracy).

Predictions are found through the run's coverage table (each row names its label PNG),
so evaluation needs nothing but OUT and a ground-truth folder:

- Cityscapes label set: ground truth in the official layout (`*_gtFine_labelTrainIds.png`,
  or `*_gtFine_labelIds.png` mapped to trainIds), searched recursively; a prediction is
  matched by the Cityscapes frame name (`aachen_000000_000019`) in its input's file name.
- Other label sets (PASCAL, ADE20K, label files): a folder of PNGs named like the input
  file (`dog.jpg` -> `dog.png`), holding class ids directly, 255 = ignore.

Only image inputs are matched: a video's file name may carry a frame name, but it does
not say which of its frames that annotation belongs to.

Scores follow the Cityscapes benchmark: one confusion matrix accumulated over all
matched frames at ground-truth resolution (a smaller prediction is upsampled with
nearest neighbour), IoU = TP / (TP + FP + FN) per class, mIoU over the classes that
occur in the ground truth, pixel accuracy over the pixels that are not ignored.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import posixpath
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from beam_seg import storage
from beam_seg.commands.commands import ArgumentParser, UsageError, check_folder, run_command
from beam_seg.commands.table import Coverage, open_coverage
from beam_seg.labels import CITYSCAPES_ID_TO_TRAINID, IGNORE_ID, LabelSet
from beam_seg.media.pixels import resize_nearest
from beam_seg.media.render import read_label_png
from beam_seg.storage import is_local, join, local_path, read_bytes, write_bytes

CITYSCAPES_FRAME = re.compile(r"[a-z]+_\d{6}_\d{6}")
TRAINIDS_SUFFIX = "_gtFine_labelTrainIds.png"
LABELIDS_SUFFIX = "_gtFine_labelIds.png"


# --------------------------------------------------------------------------- pure array work


def labelids_to_trainids(ids: np.ndarray) -> np.ndarray:
    """Cityscapes labelIds (0..33, -1 stored as 255) to trainIds 0..18; everything else 255."""
    lut = np.full(256, IGNORE_ID, np.uint8)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAINID.items():
        lut[label_id] = train_id
    return lut[ids]


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixel counts [gt class, predicted class] over pixels whose ground truth is a class.

    Shape (n, n + 1): the extra last column counts predictions outside 0..n-1 (e.g. 255),
    which are wrong for every class. Ground-truth ids outside 0..n-1 (255) are ignored.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in size")
    gt = gt.ravel().astype(np.int64)
    pred = pred.ravel().astype(np.int64)
    valid = (gt >= 0) & (gt < num_classes)
    gt, pred = gt[valid], pred[valid]
    pred = np.where((pred >= 0) & (pred < num_classes), pred, num_classes)
    counts = np.bincount(gt * (num_classes + 1) + pred, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1)


def scores(confusion: np.ndarray, names: Sequence[str]) -> dict:
    """IoU per class (None for classes absent from the ground truth), mIoU and pixel accuracy."""
    n = confusion.shape[0]
    if len(names) != n:
        raise ValueError(f"{len(names)} class names for a {n}-class confusion matrix")
    tp = np.diag(confusion[:, :n]).astype(np.float64)
    gt_pixels = confusion.sum(axis=1).astype(np.float64)  # TP + FN
    predicted = confusion[:, :n].sum(axis=0).astype(np.float64)  # TP + FP
    present = gt_pixels > 0
    union = gt_pixels + predicted - tp
    iou = np.divide(tp, union, out=np.zeros(n), where=union > 0)
    total = confusion.sum()
    return {
        "miou": float(iou[present].mean()) if present.any() else None,
        "pixel_accuracy": float(tp.sum() / total) if total else None,
        "per_class": {name: (float(iou[i]) if present[i] else None) for i, name in enumerate(names)},
    }


def cityscapes_frame_name(uri: str) -> str | None:
    """`aachen_000000_000019` from any path or URI of that frame, else None."""
    match = CITYSCAPES_FRAME.search(posixpath.basename(uri.replace("\\", "/")))
    return match.group(0) if match else None


def file_stem(uri: str) -> str:
    return posixpath.splitext(posixpath.basename(uri.replace("\\", "/")))[0]


# --------------------------------------------------------------------------- ground truth


@dataclass(frozen=True)
class GroundTruth:
    uri: str
    label_ids: bool  # Cityscapes labelIds that still need mapping to trainIds


def list_files(root: str) -> list[str]:
    """Every file under `root`, recursively, sorted (local walk, or a `**` match remotely)."""
    if not is_local(root):
        return storage.list_files(root.rstrip("/") + "/**")
    check_folder(root, "ground-truth folder")
    path = local_path(root)
    found = []
    for folder, _, files in os.walk(path):
        found.extend(os.path.join(folder, f) for f in files)
    return sorted(found)


def cityscapes_ground_truth(files: Iterable[str]) -> dict[str, GroundTruth]:
    """Frame name -> ground-truth file; labelTrainIds preferred over labelIds."""
    found: dict[str, GroundTruth] = {}
    for uri in files:
        name = posixpath.basename(uri.replace("\\", "/"))
        if name.endswith(TRAINIDS_SUFFIX):
            label_ids = False
        elif name.endswith(LABELIDS_SUFFIX):
            label_ids = True
        else:
            continue
        frame = cityscapes_frame_name(name)
        if frame is None:
            continue
        if frame not in found or (found[frame].label_ids and not label_ids):
            found[frame] = GroundTruth(uri, label_ids)
    return found


def stem_ground_truth(files: Iterable[str]) -> dict[str, GroundTruth]:
    """Input file stem -> `<stem>.png` ground truth (PASCAL/ADE20K style, ids directly)."""
    found: dict[str, GroundTruth] = {}
    for uri in files:
        if uri.lower().endswith(".png"):
            found.setdefault(file_stem(uri), GroundTruth(uri, False))
    return found


def read_ground_truth(gt: GroundTruth) -> np.ndarray:
    image = Image.open(io.BytesIO(read_bytes(gt.uri)))
    if image.mode not in ("L", "P"):
        raise ValueError(f"ground truth {gt.uri} is a {image.mode} image; expected one channel "
                         "of class ids (L or P mode)")
    ids = np.asarray(image, dtype=np.uint8)
    return labelids_to_trainids(ids) if gt.label_ids else ids


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Match:
    label_uri: str  # the prediction's label PNG
    ground_truth: GroundTruth


def match_predictions(cov: Coverage, ground_truth: str,
                      label_set: str | None = None) -> tuple[LabelSet, list[Match]]:
    """Pair the run's image predictions with ground-truth files."""
    rows = cov.query("SELECT source_uri, label_set, label_uri FROM coverage "
                     "WHERE kind = 'image' ORDER BY source_uri, label_uri")
    files = list_files(ground_truth)
    indexes = {}
    matches: dict[str, list[Match]] = {}
    for row in rows:
        name = row["label_set"]
        if label_set is not None and name != label_set:
            continue
        if name not in indexes:
            indexes[name] = (cityscapes_ground_truth(files) if name == "cityscapes"
                             else stem_ground_truth(files))
        key = (cityscapes_frame_name(row["source_uri"]) if name == "cityscapes"
               else file_stem(row["source_uri"]))
        gt = indexes[name].get(key) if key else None
        if gt is not None:
            matches.setdefault(name, []).append(Match(join(cov.out, row["label_uri"]), gt))
    if label_set is not None and label_set not in cov.label_sets:
        raise UsageError(f"label set {label_set!r} is not in this output "
                         f"(it has {', '.join(cov.label_sets)})")
    if not matches:
        how = ("a Cityscapes frame name such as aachen_000000_000019 shared by an image input "
               "and a *_gtFine_labelTrainIds.png or *_gtFine_labelIds.png file")
        if any(n != "cityscapes" for n in cov.label_sets):
            how += ", or a <input stem>.png file for PASCAL/ADE20K label sets"
        raise UsageError(f"no prediction matched any ground truth under {ground_truth!r} "
                         f"(matching needs {how}; video inputs are never matched)")
    if len(matches) > 1:
        raise UsageError(f"predictions of several label sets matched ({', '.join(sorted(matches))}); "
                         "choose one with --label-set")
    (name, found), = matches.items()
    return cov.label_sets[name], found


def evaluate(output: str, ground_truth: str, label_set: str | None = None) -> dict:
    """Score the label maps of the run in `output` against the ground truth under `ground_truth`.

    Returns {"miou", "pixel_accuracy", "per_class" (class name -> IoU, None when the class
    is absent from the ground truth), "frames" (matched predictions), "label_set"}.
    Raises UsageError when the output or the ground truth is unusable or nothing matches.
    """
    with open_coverage(output) as cov:
        labels, matches = match_predictions(cov, ground_truth, label_set)
    n = labels.num_classes
    confusion = np.zeros((n, n + 1), np.int64)
    for match in matches:
        gt = read_ground_truth(match.ground_truth)
        pred = resize_nearest(read_label_png(read_bytes(match.label_uri)), gt.shape[1], gt.shape[0])
        confusion += confusion_matrix(gt, pred, n)
    result = scores(confusion, labels.names)
    result["frames"] = len(matches)
    result["label_set"] = labels.name
    return result


def format_result(result: dict) -> str:
    """The per-class IoU table and the summary lines, for the terminal."""
    width = max(len(name) for name in result["per_class"])
    lines = [f"{'class':<{width}}  {'IoU':>6}", f"{'-' * width}  {'-' * 6}"]
    for name, iou in result["per_class"].items():
        lines.append(f"{name:<{width}}  {'absent' if iou is None else f'{iou:6.3f}':>6}")
    present = sum(1 for v in result["per_class"].values() if v is not None)
    lines += [
        "",
        f"mIoU            {result['miou']:.4f}  (over the {present} classes present in the ground truth)",
        f"pixel accuracy  {result['pixel_accuracy']:.4f}  (ignore pixels excluded)",
        f"frames          {result['frames']}  (label set {result['label_set']})",
    ]
    return "\n".join(lines)


def _command(args: argparse.Namespace) -> int:
    result = evaluate(args.output, args.ground_truth, args.label_set)
    print(format_result(result))
    if args.json:
        write_bytes(args.json, (json.dumps(result, indent=2) + "\n").encode("utf-8"))
        print(f"\nJSON: {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="beam-seg eval",
        description="Score a run's label maps against ground truth: Cityscapes layout "
                    "(*_gtFine_labelTrainIds.png or *_gtFine_labelIds.png, matched by frame "
                    "name) or, for other label sets, <input stem>.png files of class ids. "
                    "Only image inputs are scored.")
    parser.add_output()
    parser.add_argument("--ground-truth", required=True, metavar="DIR",
                        help="folder searched recursively for ground-truth PNGs")
    parser.add_argument("--json", metavar="FILE", help="also write the scores as JSON")
    parser.add_argument("--label-set", metavar="NAME",
                        help="score only predictions of this label set (when a run mixes several)")
    return run_command(parser, sys.argv[1:] if argv is None else argv, _command)
