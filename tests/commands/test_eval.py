"""`beam-seg eval`: IoU arithmetic checked by hand, then the real default model on real Cityscapes."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from beam_seg import cli
from beam_seg.commands.evaluate import (
    cityscapes_frame_name,
    confusion_matrix,
    evaluate,
    labelids_to_trainids,
    scores,
)
from beam_seg.labels import CITYSCAPES, PASCAL

from conftest import DATA
from pipeline_helpers import segment

CITYSCAPES_DIR = DATA / "cityscapes"
AACHEN_DIR = CITYSCAPES_DIR / "train" / "aachen"
AACHEN_IMAGES = sorted(AACHEN_DIR.glob("*_leftImg8bit.png"))
FRANKFURT_DIR = CITYSCAPES_DIR / "val" / "frankfurt"
FRANKFURT = FRANKFURT_DIR / "frankfurt_000000_000294_leftImg8bit.png"
SEQ_VIDEO = DATA / "videos" / "cityscapes_aachen_seq0001_512x256_17fps.mp4"
DOG = DATA / "images" / "coral_dog_segmentation.bmp"
DOG_MASK = DATA / "images" / "coral_dog_segmentation_reference_mask.bmp"


def _gt_dir(tmp_path, *files) -> str:
    """A ground-truth folder holding links to just these files (to score a chosen subset)."""
    folder = tmp_path / "gt"
    folder.mkdir(exist_ok=True)
    for f in files:
        os.symlink(f, folder / f.name)
    return str(folder)


# --------------------------------------------------------------------------- arithmetic by hand


def test_confusion_matrix_and_iou_worked_out_by_hand():
    gt = np.array([[0, 0, 1, 1],
                   [2, 2, 255, 1]], np.uint8)
    pred = np.array([[0, 3, 1, 255],
                     [2, 0, 2, 1]], np.uint8)
    # (gt, pred) pixel pairs: (0,0) (0,3) (1,1) (1,255) / (2,2) (2,0) (255,2)=ignored (1,1).
    # Rows = gt class 0..3, columns = predicted 0..3 plus "outside the label set" (255):
    expected = np.array([[1, 0, 0, 1, 0],   # gt 0: once right, once called 3
                         [0, 2, 0, 0, 1],   # gt 1: twice right, once 255
                         [1, 0, 1, 0, 0],   # gt 2: once right, once called 0
                         [0, 0, 0, 0, 0]])  # gt 3: never in the ground truth
    cm = confusion_matrix(gt, pred, 4)
    np.testing.assert_array_equal(cm, expected)

    result = scores(cm, ["a", "b", "c", "d"])
    # IoU = TP / (gt pixels + predicted pixels - TP):
    #   a: 1 / (2 + 2 - 1) = 1/3   (predicted 0 at (0,0) and at the gt-2 pixel)
    #   b: 2 / (3 + 2 - 2) = 2/3   (the 255 prediction is a miss, never a hit)
    #   c: 1 / (2 + 1 - 1) = 1/2
    #   d: absent from the ground truth -> None, left out of the mean (its false positive
    #      still cost class a a pixel)
    assert result["per_class"]["a"] == pytest.approx(1 / 3)
    assert result["per_class"]["b"] == pytest.approx(2 / 3)
    assert result["per_class"]["c"] == pytest.approx(1 / 2)
    assert result["per_class"]["d"] is None
    assert result["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)  # = 0.5
    # 4 correct of the 7 pixels with a ground-truth class.
    assert result["pixel_accuracy"] == pytest.approx(4 / 7)


def test_confusion_matrix_rejects_different_sizes():
    with pytest.raises(ValueError, match="differ in size"):
        confusion_matrix(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8), 3)


def test_labelids_map_to_trainids_with_the_official_table():
    ids = np.array([7, 8, 26, 33, 0, 6, 255], np.uint8)
    # road=7->0, sidewalk=8->1, car=26->13, bicycle=33->18; unlabeled 0, ground 6, -1 -> ignore
    np.testing.assert_array_equal(labelids_to_trainids(ids), [0, 1, 13, 18, 255, 255, 255])



def test_cityscapes_frame_names_come_from_the_file_name():
    assert cityscapes_frame_name("/d/aachen_000000_000019_leftImg8bit.png") == "aachen_000000_000019"
    assert cityscapes_frame_name("gs://b/x/frankfurt_000000_000294_gtFine_labelIds.png") == \
        "frankfurt_000000_000294"
    assert cityscapes_frame_name("/aachen_000000_000019/dashcam.png") is None  # folder names don't count


# --------------------------------------------------------------------------- real model, real data


@pytest.fixture(scope="module")
def aachen_run(tmp_path_factory):
    """The six annotated 2048x1024 aachen frames through the real pipeline (default model,
    one whole-frame pass: the configuration of the reference figures)."""
    out = tmp_path_factory.mktemp("eval-aachen")
    assert segment(AACHEN_IMAGES, out, "--quality", "fast") == 0
    return out


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """Frankfurt val at its GT size, a half-size aachen frame under its Cityscapes name, and a
    video named after an annotated frame (which must never be matched)."""
    inputs = tmp_path_factory.mktemp("eval-inputs")
    small = inputs / AACHEN_IMAGES[0].name
    Image.open(AACHEN_IMAGES[0]).resize((1024, 512), Image.BILINEAR).save(small)
    video = inputs / "aachen_000001_000019_leftImg8bit.mp4"
    shutil.copy(SEQ_VIDEO, video)
    out = tmp_path_factory.mktemp("eval-mixed")
    assert segment([FRANKFURT, small, video], out, "--quality", "fast") == 0
    return out


@pytest.mark.real_model
def test_eval_on_the_six_aachen_frames(aachen_run, tmp_path, capsys):
    json_path = tmp_path / "scores.json"
    code = cli.main(["eval", "--output", str(aachen_run), "--ground-truth", str(AACHEN_DIR),
                     "--json", str(json_path)])
    assert code == 0
    result = json.loads(json_path.read_text())
    assert {"miou", "pixel_accuracy", "per_class", "frames"} <= result.keys()
    assert result["frames"] == 6
    # One stretched 513x513 pass per frame: the reference implementation gets 0.49 / 0.93.
    assert 0.40 < result["miou"] < 0.60
    assert result["pixel_accuracy"] > 0.85
    assert list(result["per_class"]) == list(CITYSCAPES.names)
    assert result["per_class"]["road"] > 0.9
    assert result["per_class"]["truck"] is None  # no truck pixel in these six frames
    present = [v for v in result["per_class"].values() if v is not None]
    assert result["miou"] == pytest.approx(sum(present) / len(present))
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "traffic light" in printed and f"{result['miou']:.4f}" in printed


@pytest.mark.real_model
def test_label_ids_give_the_same_scores_as_train_ids(aachen_run, tmp_path):
    train_ids = evaluate(str(aachen_run), str(AACHEN_DIR))  # both kinds there: trainIds preferred
    label_ids = evaluate(str(aachen_run),
                         _gt_dir(tmp_path, *sorted(AACHEN_DIR.glob("*_gtFine_labelIds.png"))))
    assert label_ids == train_ids


@pytest.mark.real_model
def test_only_images_are_matched_and_smaller_predictions_are_upsampled(mixed_run, aachen_run, tmp_path):
    everything = evaluate(str(mixed_run), str(CITYSCAPES_DIR))  # train/ and val/, recursively
    assert everything["frames"] == 2  # frankfurt and the half-size aachen frame; not the video

    # The 1024x512 copy is scored at GT size (2048x1024) and lands close to the full-size run:
    # the model sees both frames at 513x513, so the predictions differ only by resampling.
    one_frame = _gt_dir(tmp_path, AACHEN_DIR / "aachen_000000_000019_gtFine_labelTrainIds.png")
    small, full = evaluate(str(mixed_run), one_frame), evaluate(str(aachen_run), one_frame)
    assert small["frames"] == full["frames"] == 1
    assert small["pixel_accuracy"] == pytest.approx(full["pixel_accuracy"], abs=0.02)
    assert small["miou"] == pytest.approx(full["miou"], abs=0.05)

    frankfurt = evaluate(str(mixed_run), str(FRANKFURT_DIR))  # 256x128 image, 256x128 GT
    assert frankfurt["frames"] == 1
    assert frankfurt["pixel_accuracy"] > 0.7 and 0.3 < frankfurt["miou"] < 0.7  # measured 0.78 / 0.48


@pytest.mark.real_model
def test_pascal_ground_truth_is_a_png_named_like_the_input(tmp_path):
    # Coral's reference mask: 0 = pet, 1 = background, 2 = border -> PASCAL dog / background / ignore.
    mask = np.asarray(Image.open(DOG_MASK))
    gt = np.choose(mask, [PASCAL.id_of("dog"), 0, 255]).astype(np.uint8)
    gt_dir = tmp_path / "gt" / "nested"
    gt_dir.mkdir(parents=True)
    Image.fromarray(gt, mode="L").save(gt_dir / "coral_dog_segmentation.png")
    out = tmp_path / "out"
    assert segment([DOG], out, "--model", "pascal-mnv2-quant") == 0
    result = evaluate(str(out), str(tmp_path / "gt"))
    assert result["frames"] == 1 and result["label_set"] == "pascal"
    assert list(result["per_class"]) == list(PASCAL.names)
    assert result["per_class"]["dog"] > 0.8  # the reference overlap is 0.90
    assert result["per_class"]["car"] is None


# --------------------------------------------------------------------------- errors


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("beam-seg: error: "), err
    assert "Traceback" not in err
    return err


def test_missing_output_is_a_one_line_error(tmp_path, capsys):
    code = cli.main(["eval", "--output", str(tmp_path / "nope"), "--ground-truth", str(AACHEN_DIR)])
    assert code == 2
    assert "does not exist" in _one_error_line(capsys)


def test_missing_arguments_are_a_one_line_error(capsys):
    assert cli.main(["eval", "--output", "x"]) == 2
    assert "--ground-truth" in _one_error_line(capsys)


@pytest.mark.real_model
def test_no_matching_ground_truth_is_a_one_line_error(aachen_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = cli.main(["eval", "--output", str(aachen_run), "--ground-truth", str(tmp_path / "empty")])
    assert code == 2
    assert "no prediction matched" in _one_error_line(capsys)
    code = cli.main(["eval", "--output", str(aachen_run), "--ground-truth", str(tmp_path / "nope")])
    assert code == 2
    assert "does not exist" in _one_error_line(capsys)


def test_empty_output_is_a_one_line_error(tmp_path, capsys):
    code = cli.main(["eval", "--output", str(tmp_path), "--ground-truth", str(AACHEN_DIR)])
    assert code == 2
    assert "no coverage files" in _one_error_line(capsys)
