"""Expose a TFLite DeepLab model's per-class logits by editing its flatbuffer when it is loaded.

The Coral DeepLab models end `logits -> ResizeBilinear (-> ResizeBilinear) -> ArgMax`: the
scores exist inside the model but only class ids come out. Making the logits tensor the
subgraph's output, and dropping the operators that no output needs any more (the 513x513
resize and the ArgMax), gives the scores for less work than the ids cost, where
`experimental_preserve_all_tensors` (meant for debugging) made every call about 20% dearer.
The schema module ships with ai-edge-litert, so TensorFlow is not needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

_OP_NAMES = {code: name for name, code in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
_RESIZES = ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR")


@dataclass(frozen=True)
class ExposedLogits:
    model: bytes  # the edited flatbuffer
    tensor_name: str
    align_corners: bool  # how the model's own resize aligned the score grid with the input


def _op_name(model, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    return _OP_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")


def expose_logits(content: bytes) -> ExposedLogits | None:
    """The model with the tensor that feeds its final resize chain and ArgMax as its output,
    or None when the model does not end in ArgMax (it already outputs scores, or something
    this edit does not understand)."""
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    if len(model.subgraphs) != 1 or len(model.subgraphs[0].outputs) != 1:
        return None
    graph = model.subgraphs[0]
    producer = {int(t): i for i, op in enumerate(graph.operators) for t in op.outputs}
    index = producer.get(int(graph.outputs[0]))
    if index is None or _op_name(model, graph.operators[index]) != "ARG_MAX":
        return None
    tensor = int(graph.operators[index].inputs[0])
    align_corners = None
    while (index := producer.get(tensor)) is not None and \
            _op_name(model, graph.operators[index]) in _RESIZES:
        if align_corners is None:  # the last resize decides where scores land on the input
            align_corners = bool(getattr(graph.operators[index].builtinOptions, "alignCorners", False))
        tensor = int(graph.operators[index].inputs[0])
    if len(graph.tensors[tensor].shape) != 4:
        return None
    graph.outputs = np.array([tensor], np.int32)
    needed, kept = {tensor}, []
    for op in reversed(graph.operators):  # operators are stored in execution order
        if any(int(t) in needed for t in op.outputs):
            kept.append(op)
            needed.update(int(t) for t in op.inputs if t >= 0)
    graph.operators = kept[::-1]
    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    name = graph.tensors[tensor].name
    return ExposedLogits(bytes(builder.Output()),
                         name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name),
                         bool(align_corners) if align_corners is not None else True)
