"""The Beam `ModelHandler` that runs a segmentation model inside `RunInference`.

The handler's example is a source frame (RGB uint8 at its own size) and its inference a
`Segmentation` at that same size, so everything after RunInference is independent of the
model's input resolution.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from beam_seg.models import Model, load_label_set, load_model, resolve
from beam_seg.models.scoring import InferenceSettings, score_frames


class FrameInput(NamedTuple):
    """A RunInference example: the frame, and whether it came from an image or a video
    (they may run at different quality presets through the one shared model). `full`:
    False for a video frame between key frames (--keyframes), which takes one whole-frame pass."""

    kind: str
    rgb: np.ndarray
    full: bool = True


class DeepLabModelHandler(ModelHandler[FrameInput, PredictionResult, Model]):
    """RunInference handler: frames in, source-size label maps out.

    Beam loads one model per worker process through `Shared` and hands it to every
    DoFn thread; a TFLite model holds `interpreters` interpreters so that many threads
    infer side by side. Batches have a fixed size: every loader runs a batch one frame at
    a time, so larger batches only hold more frames in memory, and with a fixed size
    BatchElements fits no timings.
    For big models on many-process workers, `large_model=True` or `model_copies=N`
    makes Beam load N copies per machine instead of one per process.
    """

    def __init__(self, model: str, labels: str | None = None, num_threads: int | None = None,
                 settings: dict[str, InferenceSettings] | None = None, batch_size: int = 1,
                 large_model: bool = False, model_copies: int | None = None, interpreters: int = 1,
                 temporal: int = 0, onnx_providers: tuple[str, ...] = (),
                 onnx_io: dict | None = None):
        """A `RunInference` handler: `FrameInput(kind, rgb)` in, a `PredictionResult` whose
        `inference` is a `Segmentation` (`.labels`: HxW uint8 class ids at source size) out.

        Args:
            model: a `REGISTRY` name, or a .tflite / .onnx / SavedModel / frozen .pb / zoo
                .tar.gz path or URI.
            labels: a non-registry model's label set (cityscapes|pascal|ade20k|FILE).
            num_threads: threads per TFLite interpreter (None: the library's default).
            settings: kind ('image', 'video') -> `InferenceSettings` (resize, sliding windows,
                working sizes); other kinds get one stretched pass.
            batch_size: frames per batch, fixed; large_model, model_copies: Beam's own.
            interpreters: TFLite interpreters (or ONNX sessions) per model, so that many
                threads infer at once.
            temporal: K > 0 leaves video frames as scores (`labels` None) for fusion over K.
            onnx_providers: an ONNX model's execution providers, e.g. ("cuda",); the CPU
                is always the last resort.
            onnx_io: a description of an ONNX model's tensors over its own sidecar
                (`models.onnx_runtime`).

        Example:
            >>> handler = DeepLabModelHandler("cityscapes-edgetpu-slim")
            >>> labels = (frames | RunInference(handler)                 # doctest: +SKIP
            ...           | beam.Map(lambda result: result.inference.labels))
        """
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size,
                         large_model=large_model, model_copies=model_copies)
        self._model_uri = model
        self._labels = labels
        self._num_threads = num_threads
        self._interpreters = interpreters
        self.settings = settings or {}
        self.temporal = temporal
        self._onnx_providers = onnx_providers
        self._onnx_io = onnx_io

    def load_model(self) -> Model:
        resolved = resolve(self._model_uri, self._labels)
        return load_model(resolved, self._num_threads, self._interpreters,
                          load_label_set(resolved.labels).num_classes,
                          self._onnx_providers, self._onnx_io)

    def run_inference(self, batch: Sequence[FrameInput], model: Model,
                      inference_args: dict[str, Any] | None = None) -> Iterable[PredictionResult]:
        """Each frame's `Segmentation`; video frames that temporal fusion will merge with their
        neighbours keep only scores (their labels are made after fusion)."""
        model_name = model.describe().name
        results: list[PredictionResult | None] = [None] * len(batch)
        for kind, full in dict.fromkeys((item.kind, item.full) for item in batch):
            positions = [i for i, item in enumerate(batch) if (item.kind, item.full) == (kind, full)]
            settings = self.settings.get(kind, InferenceSettings())
            if not full:
                settings = InferenceSettings(settings.resize_mode, None)
            outputs = score_frames(model, [batch[i].rgb for i in positions], settings,
                                   labels=not (kind == "video" and self.temporal > 0))
            for i, output in zip(positions, outputs, strict=True):
                results[i] = PredictionResult(batch[i], output, model_id=model_name)
        return results

    def get_num_bytes(self, batch: Sequence[FrameInput]) -> int:
        return sum(item.rgb.nbytes for item in batch)  # the default pickles every frame

    def get_metrics_namespace(self) -> str:
        return "beam_seg"
