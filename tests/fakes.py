"""Every stand-in the tests use, in one place: fake models and handlers (class ids by a
colour rule, or scores), and tiny real models built in the test for each loader (TFLite,
SavedModel, frozen graph, ONNX) whose labels follow a known rule."""

from __future__ import annotations

import signal
import tarfile
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
from apache_beam.runners.runner import PipelineResult, PipelineRunner, PipelineState

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
    """Logits instead of ids (so temporal fusion has scores to merge): 65x65 input, 17x17
    logits (step 4, corners aligned); class red // 16 is strongest, with a margin that
    follows green, so fusion has something to average."""

    input_spec = InputSpec(65, 65, "uint8")
    outputs_logits = True
    name = "fake-scores"
    num_classes = 19

    def predict(self, batch: np.ndarray) -> np.ndarray:
        points = batch[:, ::4, ::4].astype(np.float32)
        logits = np.zeros((*points.shape[:3], self.num_classes), np.float32)
        ids = (points[..., 0] // 16).astype(int)
        np.put_along_axis(logits, ids[..., None], (0.5 + points[..., 1:2] / 128), axis=-1)
        return logits


class FakeScoresHandler(DeepLabModelHandler):
    def load_model(self) -> Model:
        return FakeScoresModel()


# --- Tiny real models, built in the test ------------------------------------------------

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


# --------------------------------------------------------------------------- ONNX (onnx.helper)

ONNX_CLASSES = 19


def _onnx_save(graph, path: Path) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime >= 1.14 reads
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _red_logits_weights() -> tuple[np.ndarray, np.ndarray]:
    """A 1x1 convolution over normalised RGB (x/255) whose argmax is the module's rule:
    class CAR scores red - 0.5, road scores 0, every other class -10."""
    weight = np.zeros((ONNX_CLASSES, 3), np.float32)
    bias = np.full(ONNX_CLASSES, -10.0, np.float32)
    weight[CAR, 0], bias[CAR], bias[0] = 1.0, -0.5, 0.0
    return weight, bias


def build_onnx_nchw(directory: Path, multiple: int = 8, stride: int = 2) -> Path:
    """Float NCHW of any size -> NCHW logits at `stride`. Its sides must be multiples of
    `multiple`: a max-pool by `multiple` upsampled back is added to the scores, which only
    lines up when the size divides (ONNX Runtime refuses every other size)."""
    from onnx import TensorProto, helper, numpy_helper

    weight, bias = _red_logits_weights()
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["full"]),
        helper.make_node("MaxPool", ["full"], ["coarse"], kernel_shape=[multiple, multiple],
                         strides=[multiple, multiple]),
        helper.make_node("Mul", ["coarse", "zero"], ["nothing"]),
        helper.make_node("Resize", ["nothing", "", "up"], ["aligned"], mode="nearest"),
        helper.make_node("Add", ["full", "aligned"], ["checked"]),
        helper.make_node("AveragePool", ["checked"], ["logits"], kernel_shape=[stride, stride],
                         strides=[stride, stride]),
    ]
    inits = [numpy_helper.from_array(weight[:, :, None, None], "w"),
             numpy_helper.from_array(bias, "b"),
             numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
             numpy_helper.from_array(np.array([1, 1, multiple, multiple], np.float32), "up")]
    graph = helper.make_graph(
        nodes, "tiny_nchw",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", ONNX_CLASSES, "sh", "sw"])],
        inits)
    return _onnx_save(graph, directory / "tiny_nchw.onnx")


def build_onnx_nhwc(directory: Path, size: int = 64) -> Path:
    """uint8 NHWC of a fixed size (raw 0..255 in) -> NHWC logits at full resolution."""
    from onnx import TensorProto, helper, numpy_helper

    weight, bias = _red_logits_weights()
    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["pixels", "inv255"], ["unit"]),
        helper.make_node("MatMul", ["unit", "w"], ["linear"]),
        helper.make_node("Add", ["linear", "b"], ["scores"]),
    ]
    inits = [numpy_helper.from_array(weight.T.copy(), "w"), numpy_helper.from_array(bias, "b"),
             numpy_helper.from_array(np.array(1 / 255, np.float32), "inv255")]
    graph = helper.make_graph(
        nodes, "tiny_nhwc",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, size, size, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, size, size, ONNX_CLASSES])],
        inits)
    return _onnx_save(graph, directory / "tiny_nhwc.onnx")


def build_onnx_ids_only(directory: Path) -> Path:
    """Float NCHW -> an ArgMax map of class ids (no scores): a model beam_seg must refuse."""
    from onnx import TensorProto, helper, numpy_helper

    weight, bias = _red_logits_weights()
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["full"]),
             helper.make_node("ArgMax", ["full"], ["ids"], axis=1, keepdims=0)]
    inits = [numpy_helper.from_array(weight[:, :, None, None], "w"), numpy_helper.from_array(bias, "b")]
    graph = helper.make_graph(
        nodes, "tiny_ids",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", "h", "w"])], inits)
    return _onnx_save(graph, directory / "tiny_ids.onnx")


class SignalSettingRunner(PipelineRunner):
    """Submits as a portable runner's job server does (Flink, Spark, Prism): by setting a
    SIGINT handler, which Python allows on the main thread only. The job is then done at
    once, with no metrics. `threads`: the thread each submission ran in."""

    threads: ClassVar[list[threading.Thread]] = []

    def run_pipeline(self, pipeline, options) -> PipelineResult:
        SignalSettingRunner.threads.append(threading.current_thread())
        signal.signal(signal.SIGINT, signal.getsignal(signal.SIGINT))
        return _DoneResult(PipelineState.DONE)


class _DoneResult(PipelineResult):
    def wait_until_finish(self, duration=None):
        return self._state

    def metrics(self):
        raise NotImplementedError("no metrics on this runner")
