"""What every model is to the rest of the code: its input (`InputSpec`), its facts
(`ModelInfo`) and one call, `Model.predict`. The loaders of each runtime (TFLite,
TensorFlow, ONNX Runtime) make `Model`s; nothing downstream cares which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InputSpec:
    """The model's input: a fixed size (or None for any size) and how pixels are encoded.

    Float inputs are `x * scale + offset`, then, when `mean`/`std` are given (per channel,
    ImageNet style), `(that - mean) / std`. `multiple`: a model of any size takes only
    heights and widths that are multiples of it (32 for most encoder-decoders). Encoded
    input is always NxHxWx3; a loader whose model wants NCHW transposes it itself.
    """

    height: int | None
    width: int | None
    dtype: str  # "uint8": raw 0..255; "float32": x * scale + offset
    scale: float = 1.0
    offset: float = 0.0
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    multiple: int = 1

    @property
    def fixed_size(self) -> bool:
        return self.height is not None and self.width is not None

    def encode(self, rgb: np.ndarray) -> np.ndarray:
        """RGB uint8 -> the model's input dtype and range."""
        if self.dtype == "uint8":
            return rgb
        if self.mean is None and self.std is None:
            return rgb.astype(np.float32) * np.float32(self.scale) + np.float32(self.offset)
        mean = np.asarray(self.mean if self.mean is not None else (0.0,) * 3, np.float32)
        std = np.asarray(self.std if self.std is not None else (1.0,) * 3, np.float32)
        gain, bias = np.float32(self.scale) / std, (np.float32(self.offset) - mean) / std
        encoded = rgb.astype(np.float32)
        encoded *= gain  # in place: a full-HD float frame is 25 MB
        encoded += bias
        return encoded


DEEPLAB_FLOAT = dict(scale=1 / 127.5, offset=-1.0)  # DeepLab's x/127.5 - 1


@dataclass(frozen=True)
class ModelInfo:
    name: str
    input_spec: InputSpec
    outputs_logits: bool
    num_classes: int
    align_corners: bool = True  # score grid point j sits on input pixel j*(in-1)/(out-1)
    score_size: tuple[int, int] | None = None
    exposure_mean: float | None = None  # frames brighter than this are darkened to it first


class Model:
    """A loaded segmentation model. `predict` takes NxHxWx3 encoded input and returns
    NxHxW class ids or NxHxWxC scores; `outputs_logits` says which."""

    input_spec: InputSpec
    outputs_logits: bool
    name: str
    num_classes: int = 256  # the label set's size (see load_model); ids models vote over it
    align_corners: bool = True
    score_size: tuple[int, int] | None = None  # (height, width) of the scores, when known unrun
    exposure_mean: float | None = None  # set by `load_model` from the registry

    def predict(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> ModelInfo:
        """The model's facts through a method call: with Beam's `model_copies`/`large_model`,
        RunInference hands out a cross-process proxy that forwards methods, not attributes."""
        return ModelInfo(self.name, self.input_spec, self.outputs_logits, self.num_classes,
                         self.align_corners, self.score_size, self.exposure_mean)
