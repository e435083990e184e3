"""Temporal fusion against ground truth on every frame: clips made from annotated stills
(`analytics.synthetic_video`) through the real default model. Fusion must keep or raise
mIoU while cutting the flow-compensated flicker to 0.6x of the frames alone or less."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from beam_seg.commands.evaluate import confusion_matrix, scores
from beam_seg.media import flow
from beam_seg.media.synthetic_video import CameraPath, make_clip, write_clip
from beam_seg.models import DEFAULT_MODEL, load_label_set, load_model, resolve
from beam_seg.models.scoring import QUALITY_PRESETS, InferenceSettings, score_frames
from beam_seg.pipeline.records import FrameKey, WorkUnit
from beam_seg.pipeline.temporal import TemporalFuser, protected_ids

from conftest import DATA, decode_all

pytestmark = pytest.mark.real_model

STILLS = [DATA / "bdd100k" / "00a395fe-d60c0b47.jpg", DATA / "bdd100k" / "00a360bd-27ccb1dd.jpg",
          DATA / "kitti" / "kitti_000002_000010_leftImg8bit.png"]


def _truth_of(image):
    name = (image.stem + "_trainIds.png" if image.suffix == ".jpg"
            else image.name.replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png"))
    return np.asarray(Image.open(image.with_name(name)))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Each still as a 12-frame 512x288 clip, encoded and decoded, its scores at `balanced`."""
    resolved = resolve(DEFAULT_MODEL)
    model = load_model(resolved, 2, 1, load_label_set(resolved.labels).num_classes)
    folder = tmp_path_factory.mktemp("synthetic")
    out = []
    for image in STILLS:
        frames, truths = make_clip(np.asarray(Image.open(image).convert("RGB")), _truth_of(image),
                                   512, 288, CameraPath(frames=12, shake=(5, 6, 7)))
        decoded = decode_all(write_clip(frames, str(folder / f"{image.stem}.mp4")))
        segs = score_frames(model, decoded, InferenceSettings(tiles=QUALITY_PRESETS["balanced"]),
                            labels=False)
        out.append((decoded, truths, segs))
    return out


def _run(clips, k: int) -> tuple[float, float]:
    confusion, flickers = np.zeros((19, 20), np.int64), []
    protected = protected_ids(load_label_set(resolve(DEFAULT_MODEL).labels).names)  # as the pipeline
    for frames, truths, segs in clips:
        fuser, fused = TemporalFuser(k, protected), []
        for i, (rgb, seg) in enumerate(zip(frames, segs, strict=True)):
            fused += fuser.add(FrameKey(WorkUnit("clip", "clip", "video"), i, 0.0), rgb, seg)
        labels = [f.labels for f in fused + fuser.flush()]
        greys = [flow.small_grey(f) for f in frames]
        flickers += [flow.flicker(labels[t], labels[t - 1], flow.dense_flow(greys[t], greys[t - 1]))
                     for t in range(1, len(labels))]
        for truth, label in zip(truths, labels, strict=True):
            confusion += confusion_matrix(truth, label, 19)
    return scores(confusion, [str(c) for c in range(19)])["miou"], float(np.mean(flickers))


def test_fusion_raises_or_keeps_miou_on_every_frame_while_cutting_flicker(clips):
    alone, fused = _run(clips, 0), _run(clips, 1)
    print({"K=0": alone, "K=1": fused})
    assert fused[0] >= alone[0]
    assert fused[1] <= 0.6 * alone[1]
