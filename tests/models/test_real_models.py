"""Real pretrained models on real images: the accuracy bars of the foundation issue."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from beam_seg.labels import CITYSCAPES, PASCAL
from beam_seg.media.images import decode_image
from beam_seg.models import InputSpec, load_label_set, load_model, resolve
from beam_seg.models.placement import fit_to_input, labels_to_source
from beam_seg.models.scoring import InferenceSettings, segment_frames

from conftest import DATA

pytestmark = pytest.mark.real_model  # the second tier: runs the real model

IMAGES = DATA / "images"


def _rgb(name: str) -> np.ndarray:
    return decode_image((IMAGES / name).read_bytes())


def _labels(model: str, name: str, **settings) -> np.ndarray:
    loaded = load_model(resolve(model))
    return segment_frames(loaded, [_rgb(name)], InferenceSettings(**settings))[0]


def test_default_model_matches_coral_reference_mask():
    labels = _labels("cityscapes-edgetpu-slim", "coral_cityscapes_segmentation.bmp")
    reference = np.asarray(Image.open(IMAGES / "coral_cityscapes_segmentation_reference_mask.bmp"))
    assert labels.shape == reference.shape
    assert (labels == reference).mean() >= 0.90


def test_pascal_quant_dog_overlaps_the_pet_mask():
    labels = _labels("pascal-mnv2-quant", "coral_dog_segmentation.bmp")
    pet = np.asarray(Image.open(IMAGES / "coral_dog_segmentation_reference_mask.bmp")) == 0
    dog = labels == PASCAL.id_of("dog")
    iou = (dog & pet).sum() / (dog | pet).sum()
    assert iou >= 0.85


def _most_frequent(labels: np.ndarray, exclude: int | None = None) -> int:
    counts = np.bincount(labels.ravel(), minlength=256)
    if exclude is not None:
        counts[exclude] = 0
    return int(counts.argmax())


def test_float_logits_pascal_model_finds_the_dog():
    labels = _labels("pascal-mnv2-float", "coral_dog_segmentation.bmp")
    assert PASCAL.names[_most_frequent(labels, exclude=0)] == "dog"


def test_ade20k_logits_model_finds_the_road():
    ade = load_label_set(resolve("ade20k-mnv2").labels)
    assert ade.num_classes == 151 and ade.names[0] == "other"
    labels = _labels("ade20k-mnv2", "coral_cityscapes_segmentation.bmp")
    assert ade.names[_most_frequent(labels)] == "road"


@pytest.mark.parametrize("mode", ["stretch", "pad"])
def test_fit_and_undo_map_every_source_pixel_back(mode):
    """A label map that is the identity of its model-input position maps back onto the source."""
    rgb = np.zeros((100, 300, 3), np.uint8)
    model_input, placement = fit_to_input(rgb, InputSpec(64, 64, "uint8"), mode)
    assert model_input.shape == (64, 64, 3)
    ids = np.zeros((64, 64), np.uint8)
    ids[placement.y:placement.y + placement.height, placement.x:placement.x + placement.width] = 7
    back = labels_to_source(ids, placement, 300, 100)
    assert back.shape == (100, 300) and (back == 7).all()


def test_pad_mode_centres_the_frame_with_grey():
    model_input, placement = fit_to_input(np.zeros((50, 100, 3), np.uint8), InputSpec(64, 64, "uint8"), "pad")
    assert (placement.width, placement.height) == (64, 32)
    assert (model_input[:placement.y] == 128).all() and (model_input[placement.y:placement.y + 32] == 0).all()


def test_every_pixel_of_an_odd_sized_frame_gets_a_label():
    loaded = load_model(resolve("cityscapes-edgetpu-slim"))
    frame = _rgb("dashcam/vehicle_test1.jpg")[:301, :517]
    labels = segment_frames(loaded, [frame])[0]
    assert labels.shape == (301, 517)
    assert labels.max() < CITYSCAPES.num_classes
