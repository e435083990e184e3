"""Tiny models with DeepLab's tensor contracts, built inside the tests (no downloads).

Their rule is known, so the expected label of every pixel is known: class 13 ('car' in
Cityscapes) where red > 127, else 0 ('road').
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

CAR = 13


def expected_labels(rgb: np.ndarray) -> np.ndarray:
    return np.where(rgb[..., 0] > 127, CAR, 0).astype(np.uint8)


def build_frozen_graph(directory: Path) -> tuple[Path, Path]:
    """A DeepLab-zoo style frozen graph: ImageTensor:0 uint8 -> SemanticPredictions:0 int64.

    Returns the .pb and the same graph packed the way the model zoo ships it (.tar.gz).
    """
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.uint8, [1, None, None, 3], name="ImageTensor")
        red = tf.cast(image[..., 0], tf.int64)
        tf.identity(tf.where(red > 127, tf.constant(CAR, tf.int64), tf.constant(0, tf.int64)),
                    name="SemanticPredictions")
    pb = directory / "frozen_inference_graph.pb"
    pb.write_bytes(graph.as_graph_def().SerializeToString())
    tarball = directory / "tiny_zoo_model.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(pb, arcname="tiny_zoo_model/frozen_inference_graph.pb")
    return pb, tarball


def build_saved_model(directory: Path, logits: bool = False) -> Path:
    """A SavedModel: uint8 image -> int ids, or float image (x/127.5-1) -> 19-class logits."""
    import tensorflow as tf

    class Tiny(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3],
                                                    tf.float32 if logits else tf.uint8)])
        def serve(self, image):
            if logits:
                red = (image[..., 0] + 1.0) * 127.5
                car = tf.cast(red > 127.5, tf.float32)
                scores = tf.one_hot(tf.cast(car, tf.int32) * CAR, 19)
                return {"logits": scores}
            red = tf.cast(image[..., 0], tf.int64)
            return {"SemanticPredictions": tf.where(red > 127, tf.constant(CAR, tf.int64),
                                                    tf.constant(0, tf.int64))}

    module = Tiny()
    path = directory / ("saved_logits" if logits else "saved_ids")
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def build_tflite(directory: Path, size: int = 64, channels: int = 19) -> Path:
    """A small float TFLite model (conv + bilinear-free logits) for fast pipeline tests."""
    import tensorflow as tf

    inputs = tf.keras.Input((size, size, 3), batch_size=1, dtype=tf.float32)
    x = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    outputs = tf.keras.layers.Conv2D(channels, 1, padding="same")(x)
    model = tf.keras.Model(inputs, outputs)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    path = directory / "tiny.tflite"
    path.write_bytes(converter.convert())
    return path
