"""A stand-in model for the fast test tier: the real pipeline's wiring, without TFLite.

Its rule is simple enough to compute independently in a test: a pixel's class is its red
value // 16 (so 0..15, inside Cityscapes' 19 classes), whatever its neighbours.
"""

from __future__ import annotations

import numpy as np

from beam_seg.models.handler import DeepLabModelHandler
from beam_seg.models.interface import InputSpec, Model

FAKE_SIZE = 64


def fake_class_ids(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] // 16).astype(np.uint8)


class FakeModel(Model):
    """Fixed 64x64 uint8 input, class ids out (like the default model's ArgMax output)."""

    input_spec = InputSpec(FAKE_SIZE, FAKE_SIZE, "uint8")
    outputs_logits = False
    name = "fake"
    num_classes = 19

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return fake_class_ids(batch)


class FakeHandler(DeepLabModelHandler):
    """The pipeline's own handler (batching, per-kind settings, label maps at source size)
    with the fake model loaded in place of the real one."""

    def load_model(self) -> Model:
        return FakeModel()


def is_poisoned(rgb: np.ndarray) -> bool:
    """A frame a test marks to make the model fail: clearly blue (its blue well above its red)."""
    return float(rgb[..., 2].mean()) - float(rgb[..., 0].mean()) > 100


class FailingModel(FakeModel):
    """The fake model, except that it raises on a poisoned frame (a model failing on one input)."""

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if any(is_poisoned(frame) for frame in batch):
            raise ValueError("the model cannot read this frame")
        return super().predict(batch)


class FailingHandler(DeepLabModelHandler):
    def load_model(self) -> Model:
        return FailingModel()


class FakeScoresModel(Model):
    """Logits instead of ids (so temporal fusion has scores to merge): one-hot at the fake
    rule's class red // 16, on a 17x17 grid over a 65x65 input."""

    input_spec = InputSpec(65, 65, "uint8")
    outputs_logits = True
    name = "fake-scores"
    num_classes = 19

    def predict(self, batch: np.ndarray) -> np.ndarray:
        points = batch[:, ::4, ::4]
        return np.eye(self.num_classes, dtype=np.float32)[fake_class_ids(points)] * 4


class FakeScoresHandler(DeepLabModelHandler):
    def load_model(self) -> Model:
        return FakeScoresModel()
