"""Before a run starts: the label set must name as many classes as the model tells apart.

A label file of 3 names for a 21-class model would make every id from 3 up count as
`frac_ignore`: cars and people vanish from the tables without a word. The model's class
count comes from the registry (its own label set) or, for a TFLite or ONNX file of one's
own, from its scores tensor; a model that outputs ids only (or whose class axis is not a
fixed size) says nothing, and is not checked.
"""

from __future__ import annotations

from beam_seg.job.exits import UsageError
from beam_seg.labels import LabelSet
from beam_seg.models import REGISTRY, ResolvedModel, load_label_set, resolve


def tflite_classes(path: str) -> int | None:
    """The channels of a TFLite model's scores output (N, H, W, C), or None for ids."""
    from ai_edge_litert.interpreter import Interpreter

    out = Interpreter(model_path=path).get_output_details()[0]
    shape = [int(v) for v in out["shape"]]
    return shape[-1] if len(shape) == 4 and shape[-1] > 1 else None


def onnx_classes(resolved: ResolvedModel) -> int | None:
    """The class axis of an ONNX model's score output, when the graph gives it a fixed size
    (None when it does not, or when the model's description does not fit it: the launch's
    own load of the model says what is wrong then)."""
    import onnxruntime as ort

    from beam_seg.models.onnx_runtime import OnnxModelError, describe_io

    session = ort.InferenceSession(resolved.path, providers=["CPUExecutionProvider"])
    try:
        io = describe_io(session.get_inputs(), session.get_outputs(), resolved.io, resolved.name)
    except OnnxModelError:
        return None
    scores = next(o for o in session.get_outputs() if o.name == io.output_name)
    classes = scores.shape[1 if io.output_layout == "NCHW" else 3]
    return classes if isinstance(classes, int) and classes > 1 else None


def model_classes(model: str, resolved: ResolvedModel) -> int | None:
    """How many classes the model tells apart, when that can be known before loading it."""
    spec = REGISTRY.get(model) or REGISTRY.get(resolved.name)
    if spec is not None:
        return load_label_set(resolve(spec.name).labels).num_classes
    if resolved.format == "tflite":
        return tflite_classes(resolved.path)
    if resolved.format == "onnx":
        return onnx_classes(resolved)
    return None


def check_label_set(model: str, resolved: ResolvedModel, label_set: LabelSet) -> None:
    """UsageError (exit 2) when the label set does not fit the model's class count."""
    classes = model_classes(model, resolved)
    if classes is not None and classes != label_set.num_classes:
        raise UsageError(
            f"the label set {label_set.name!r} names {label_set.num_classes} classes, but the "
            f"model {resolved.name} has {classes}; give --labels the model's own label set")
