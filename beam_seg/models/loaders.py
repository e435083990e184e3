"""Loaders that turn a model file into one small interface: `Model.predict(batch)`.

Every loader answers the same two questions (what input does the model want, and
does it give class ids or logits) so pre- and post-processing never care about format.
"""

from __future__ import annotations

import logging
import os
import queue

import numpy as np

from beam_seg.models.interface import DEEPLAB_FLOAT, InputSpec, Model
from beam_seg.models.registry import ResolvedModel, extract_frozen_graph

log = logging.getLogger("beam_seg")


def default_threads() -> int:
    """Interpreter threads: all cores unless BEAM_SEG_THREADS says otherwise."""
    env = os.environ.get("BEAM_SEG_THREADS")
    return int(env) if env else max(1, os.cpu_count() or 1)


def tensor_bytes(interpreter) -> int:
    """The bytes of all an interpreter's tensors: an upper bound of its memory (its arena
    reuses space between layers; measured about half of this for the registry models)."""
    return sum(int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize
               for t in interpreter.get_tensor_details() if len(t["shape"]))


def memory_budget() -> int | None:
    """A quarter of the machine's physical memory, for a pool of interpreters (None where
    the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (AttributeError, ValueError, OSError):
        return None


def affordable_interpreters(requested: int, per_interpreter: int, budget: int | None) -> int:
    """How many of the `requested` interpreters fit the budget (always at least one)."""
    if budget is None or per_interpreter <= 0:
        return requested
    return max(1, min(requested, budget // per_interpreter))


class TFLiteModel(Model):
    """A TFLite model through ai_edge_litert: a pool of `instances` interpreters.

    An interpreter is not thread-safe, and Beam runs several DoFn threads per process
    sharing this object, so each call borrows an idle interpreter from the pool. Several
    single-thread interpreters side by side beat one interpreter using every core when
    other work shares the cores: XNNPACK's threads meet at a barrier after every layer, so
    a core lent to decoding or encoding stalls the whole call, while independent
    interpreters never wait for each other (2 cores, `make bench`: about 48 inferences/s
    for two 1-thread interpreters, 42 to 46 for one 2-thread interpreter).
    """

    def __init__(self, path: str, name: str, num_threads: int | None = None, instances: int = 1,
                 num_classes: int = 256):
        from ai_edge_litert.interpreter import Interpreter

        from beam_seg.models.surgery import expose_logits

        if instances < 1:
            raise ValueError("a model needs at least one interpreter")
        self.name = name
        self.num_classes = num_classes
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        with open(path, "rb") as f:
            content = f.read()
        exposed = expose_logits(content)
        if exposed is not None:  # scores instead of ArgMax ids, and cheaper (see surgery.py)
            content, self.align_corners = exposed.model, exposed.align_corners
            log.debug("%s: scores read from %s", name, exposed.tensor_name)

        def new_interpreter():
            interpreter = Interpreter(model_content=content, num_threads=num_threads or default_threads())
            interpreter.allocate_tensors()
            self._idle.put(interpreter)
            return interpreter

        interpreter = new_interpreter()
        self.interpreter_bytes = tensor_bytes(interpreter)
        self.instances = affordable_interpreters(instances, self.interpreter_bytes, memory_budget())
        if self.instances < instances:
            log.warning("%s: %d interpreters instead of %d: each may take up to %d MB, and the "
                        "pool keeps to a quarter of this machine's memory", name, self.instances,
                        instances, self.interpreter_bytes // 10**6)
        for _ in range(self.instances - 1):
            new_interpreter()
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        self._input_index, self._output_index = inp["index"], out["index"]
        _, height, width, _ = (int(v) for v in inp["shape"])
        dtype = np.dtype(inp["dtype"])
        if dtype == np.uint8:
            self.input_spec = InputSpec(height, width, "uint8")
        elif dtype == np.float32:
            self.input_spec = InputSpec(height, width, "float32", **DEEPLAB_FLOAT)
        else:
            raise ValueError(f"{name}: unsupported input type {dtype}")
        self._input_dtype = dtype
        self.outputs_logits = len(out["shape"]) == 4
        if self.outputs_logits:
            self.score_size = (int(out["shape"][1]), int(out["shape"][2]))
        scale, zero_point = out.get("quantization", (0.0, 0))
        self._dequantize = (np.float32(scale), np.float32(zero_point)) \
            if self.outputs_logits and scale else None
        if not self.outputs_logits:
            log.warning("%s outputs class ids only: windows are merged by vote, and there are "
                        "no scores for confidence or temporal fusion", name)

    def _read_output(self, interpreter) -> np.ndarray:
        """The output of the last invoke. Quantized logits become float32 logits; class ids
        (int64 from ArgMax: 2 MB at 513x513) are narrowed straight from the interpreter's
        buffer, one copy instead of three."""
        if self.outputs_logits:
            scores = interpreter.get_tensor(self._output_index)[0]
            if self._dequantize is None:
                return scores
            scale, zero_point = self._dequantize
            return (scores.astype(np.float32) - zero_point) * scale
        return interpreter.tensor(self._output_index)()[0].astype(np.uint8)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        outputs = []
        interpreter = self._idle.get()  # waits while every interpreter is busy
        try:
            for item in batch:
                tensor = item[None].astype(self._input_dtype, copy=False)
                interpreter.set_tensor(self._input_index, tensor)
                interpreter.invoke()
                outputs.append(self._read_output(interpreter))
        finally:
            self._idle.put(interpreter)
        return np.stack(outputs)


class TFFunctionModel(Model):
    """A TensorFlow concrete function (SavedModel signature or pruned frozen graph).

    TF functions are thread-safe, so no lock is needed.
    """

    def __init__(self, fn, name: str, input_spec: InputSpec, outputs_logits: bool, output_key=None,
                 num_classes: int = 256):
        self._fn = fn
        self.name = name
        self.num_classes = num_classes
        self.input_spec = input_spec
        self.outputs_logits = outputs_logits
        self._output_key = output_key

    def predict(self, batch: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        outputs = []
        for item in batch:  # variable-size models take one image at a time
            result = self._fn(tf.constant(item[None]))
            if isinstance(result, dict):
                result = result[self._output_key]
            outputs.append(np.asarray(result)[0])
        return np.stack(outputs)


def _spec_from_tensor(shape, dtype) -> InputSpec:
    dims = list(shape)
    height = int(dims[1]) if len(dims) == 4 and dims[1] is not None else None
    width = int(dims[2]) if len(dims) == 4 and dims[2] is not None else None
    if dtype == "uint8":
        return InputSpec(height, width, "uint8")
    return InputSpec(height, width, "float32", **DEEPLAB_FLOAT)


def load_saved_model(path: str, name: str, num_classes: int = 256) -> Model:
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    fn = loaded.signatures.get("serving_default") or next(iter(loaded.signatures.values()))
    _, kwargs = fn.structured_input_signature
    if len(kwargs) != 1:
        raise ValueError(f"{name}: expected one image input, got {sorted(kwargs)}")
    (input_key, input_tensor), = kwargs.items()
    outputs = fn.structured_outputs
    key = _pick_output(outputs)
    out = outputs[key]
    spec = _spec_from_tensor(input_tensor.shape, input_tensor.dtype.name)
    logits = out.shape.rank == 4

    def call(x):
        return fn(**{input_key: tf.cast(x, input_tensor.dtype)})

    return TFFunctionModel(call, name, spec, logits, output_key=key, num_classes=num_classes)


def _pick_output(outputs: dict) -> str:
    """Prefer DeepLab's names, then an integer map (ids), then a 4-D float map (logits)."""
    for preferred in ("SemanticPredictions", "semantic_predictions", "predictions"):
        if preferred in outputs:
            return preferred
    for key, tensor in outputs.items():
        if tensor.dtype.is_integer and tensor.shape.rank == 3:
            return key
    for key, tensor in outputs.items():
        if tensor.shape.rank == 4:
            return key
    return next(iter(outputs))


def load_frozen_graph(path: str, name: str, input_name: str = "ImageTensor:0",
                      output_name: str = "SemanticPredictions:0", num_classes: int = 256) -> Model:
    """A DeepLab model-zoo frozen graph: uint8 [1,H,W,3] any size -> ids [1,H,W]."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(extract_frozen_graph(path))
    wrapped = tf.compat.v1.wrap_function(
        lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    fn = wrapped.prune(wrapped.graph.get_tensor_by_name(input_name),
                       wrapped.graph.get_tensor_by_name(output_name))
    log.warning("%s outputs class ids only (SemanticPredictions): no scores for confidence or "
                "temporal fusion, label maps as the graph gives them", name)
    return TFFunctionModel(fn, name, InputSpec(None, None, "uint8"), outputs_logits=False,
                           num_classes=num_classes)


def load_model(resolved: ResolvedModel, num_threads: int | None = None, instances: int = 1,
               num_classes: int = 256, providers: tuple[str, ...] = (),
               io_override: dict | None = None) -> Model:
    """`num_threads` and `instances` (interpreters or sessions side by side) apply to TFLite
    and ONNX; TensorFlow functions are thread-safe and schedule their own threads.
    `num_classes` is the label set's size, which an ids-only model's window votes are counted
    over. `providers` and `io_override` (over the model's description) apply to ONNX."""
    model = _load(resolved, num_threads, instances, num_classes, providers, io_override)
    model.exposure_mean = resolved.exposure_mean
    return model


def _load(resolved: ResolvedModel, num_threads: int | None, instances: int, num_classes: int,
          providers: tuple[str, ...], io_override: dict | None) -> Model:
    if resolved.format == "onnx":
        from beam_seg.models.onnx_runtime import load_onnx

        return load_onnx(resolved, num_threads, instances, num_classes, providers, io_override)
    if resolved.format == "tflite":
        return TFLiteModel(resolved.path, resolved.name, num_threads, instances, num_classes)
    if resolved.format == "savedmodel":
        return load_saved_model(resolved.path, resolved.name, num_classes)
    if resolved.format == "frozen_graph":
        return load_frozen_graph(resolved.path, resolved.name, num_classes=num_classes)
    raise ValueError(f"unknown model format {resolved.format!r}")
