"""A stand-in model for the fast test tier: the real pipeline's wiring, without TFLite.

Its rule is simple enough to compute independently in a test: a pixel's class is its red
value // 16 (so 0..15, inside Cityscapes' 19 classes), whatever its neighbours.
"""

from __future__ import annotations

import numpy as np

from beam_seg.models.inference import DeepLabModelHandler
from beam_seg.models.loaders import InputSpec, Model

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
