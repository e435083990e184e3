"""ONNX Runtime as a second runtime: any ONNX segmentation model that outputs per-class scores.

A model's tensors are described by a small dict: the registry's, a sidecar file beside a
user's model (`model.onnx.json`), or `--onnx-spec` (a file or inline JSON) on top of either:

    {"input":  {"name": "input", "layout": "NCHW", "size": null, "multiple": 32,
                "scale": 0.00392156862745098, "offset": 0.0,
                "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
     "output": {"name": "logits", "align_corners": false}}

What is left out is read from the model where it can be: the layout from which axis has 3
channels, the dtype and a fixed size from the input's shape, the output as the one 4-D float
output. Only a float input's normalisation cannot be guessed, and is required. The output's
stride needs no saying: it follows from the output's size against the input's.

Sessions follow Beam's `apache_beam.ml.inference.onnx_inference.OnnxModelHandler`: the model's
bytes, `SessionOptions` and a provider list (with the CPU always last) into one
`InferenceSession`. See `OnnxModel` for how many sessions, and why.
"""

from __future__ import annotations

import json
import logging
import queue
from dataclasses import dataclass

import numpy as np

from beam_seg import storage
from beam_seg.models.interface import InputSpec, Model
from beam_seg.models.registry import ModelNotFoundError, ResolvedModel

log = logging.getLogger("beam_seg")

LAYOUTS = ("NCHW", "NHWC")
DEFAULT_MULTIPLE = 32  # a model of any size whose description says nothing: most nets need it
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}
INPUT_KEYS = {"name", "layout", "size", "multiple", "dtype", "scale", "offset", "mean", "std"}
OUTPUT_KEYS = {"name", "layout", "align_corners"}


_said: set[str] = set()


def warn_once(message: str) -> None:
    """A warning once per process: the launcher and the workers of a local run share one."""
    if message not in _said:
        _said.add(message)
        log.warning("%s", message)


class OnnxModelError(ModelNotFoundError):
    """An ONNX model or description beam_seg cannot use (one line, exit 2 at launch)."""


@dataclass(frozen=True)
class OnnxIO:
    """How to feed an ONNX model and read its scores."""

    input_name: str
    layout: str
    input_spec: InputSpec
    output_name: str
    output_layout: str
    align_corners: bool


def parse_providers(text: str | None) -> tuple[str, ...]:
    """`--onnx-providers cuda,tensorrt` -> ONNX Runtime provider names (CPU is always added last)."""
    names = [part.strip().lower() for part in (text or "cpu").split(",") if part.strip()]
    unknown = [n for n in names if n not in PROVIDERS]
    if unknown:
        raise OnnxModelError(f"unknown ONNX provider {unknown[0]!r}: use {', '.join(PROVIDERS)}")
    return tuple(PROVIDERS[n] for n in names)


def choose_providers(requested: tuple[str, ...], available: list[str]) -> tuple[list[str], str | None]:
    """The requested providers this onnxruntime has, CPU last, and a one-line message naming
    those it lacks (None when it has them all)."""
    chosen = [p for p in requested if p in available and p != PROVIDERS["cpu"]]
    missing = [p for p in requested if p not in available]
    message = None
    if missing:
        message = (f"ONNX Runtime here has no {', '.join(missing)} (install onnxruntime-gpu and "
                   f"the CUDA libraries for GPUs): running on {chosen[0] if chosen else 'the CPU'}")
    return [*chosen, PROVIDERS["cpu"]], message


def load_io_override(value: str | None) -> dict | None:
    """`--onnx-spec`: inline JSON, or a path/URI of a JSON file."""
    if not value:
        return None
    text = value if value.lstrip().startswith("{") else None
    if text is None:
        if not storage.exists(value):
            raise OnnxModelError(f"--onnx-spec {value!r}: neither JSON nor a readable file")
        text = storage.read_bytes(value).decode("utf-8")
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise OnnxModelError(f"--onnx-spec: not JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise OnnxModelError("--onnx-spec: expected a JSON object with 'input' and 'output'")
    return spec


def merge_io(base: dict | None, override: dict | None) -> dict:
    """`override`'s input and output keys over `base`'s."""
    merged: dict = {"input": {}, "output": {}}
    for part in (base or {}, override or {}):
        for key in ("input", "output"):
            merged[key].update(part.get(key) or {})
    return merged


def _check_keys(io: dict, name: str) -> None:
    for part, known in (("input", INPUT_KEYS), ("output", OUTPUT_KEYS)):
        unknown = sorted(set(io.get(part, {})) - known)
        if unknown:
            raise OnnxModelError(f"{name}: unknown {part} key {unknown[0]!r} in the ONNX "
                                 f"description (known: {', '.join(sorted(known))})")
    extra = sorted(set(io) - {"input", "output"})
    if extra:
        raise OnnxModelError(f"{name}: unknown key {extra[0]!r} in the ONNX description "
                             "(expected 'input' and 'output')")


def _dim(value) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def describe_io(inputs: list, outputs: list, io: dict | None, name: str) -> OnnxIO:
    """Inputs/outputs (ONNX Runtime NodeArgs: .name, .shape, .type) and a description -> OnnxIO."""
    io = merge_io(io, None)
    _check_keys(io, name)
    given, wanted = io["input"], io["output"]
    if "name" in given:
        images = [i for i in inputs if i.name == given["name"]]
        if not images:
            raise OnnxModelError(f"{name}: no input named {given['name']!r}; it has "
                                 f"{[i.name for i in inputs]}")
    elif len(inputs) != 1:
        raise OnnxModelError(f"{name}: expected one image input, it has {[i.name for i in inputs]}: "
                             "say which in the description's \"input\": {\"name\": ...}")
    image = images[0] if "name" in given else inputs[0]
    shape = list(image.shape)
    if len(shape) != 4:
        raise OnnxModelError(f"{name}: input {image.name!r} has shape {shape}, not an image batch")
    layout = given.get("layout") or ("NCHW" if shape[1] == 3 else "NHWC" if shape[3] == 3 else None)
    if layout not in LAYOUTS:
        raise OnnxModelError(f"{name}: unknown input layout {layout!r}: say \"layout\": "
                             f"\"NCHW\" or \"NHWC\" in the model's description")
    h_axis, w_axis = (2, 3) if layout == "NCHW" else (1, 2)
    size = given.get("size") or [_dim(shape[h_axis]), _dim(shape[w_axis])]
    height, width = (int(v) if v else None for v in size)
    dtype = given.get("dtype") or ("uint8" if image.type == "tensor(uint8)" else
                                   "float32" if image.type == "tensor(float)" else image.type)
    if dtype not in ("uint8", "float32"):
        raise OnnxModelError(f"{name}: input type {dtype} is not supported (uint8 or float32)")
    if dtype == "float32" and not {"scale", "offset", "mean", "std"} & set(given):
        raise OnnxModelError(f"{name}: say how pixels are normalised for its float input: "
                             "\"scale\"/\"offset\" and/or \"mean\"/\"std\" in the description")
    spec = InputSpec(height, width, dtype, float(given.get("scale", 1.0)),
                     float(given.get("offset", 0.0)),
                     _triple(given.get("mean"), "mean", name), _triple(given.get("std"), "std", name),
                     1 if height and width else int(given.get("multiple", DEFAULT_MULTIPLE)))
    scores = [o for o in outputs if o.name == wanted["name"]] if "name" in wanted else \
        [o for o in outputs if len(o.shape) == 4 and o.type in ("tensor(float)", "tensor(float16)")]
    if not scores:
        found = ", ".join(f"{o.name} {o.type} rank {len(o.shape)}" for o in outputs)
        raise OnnxModelError(f"{name}: no score output (a 4-D float tensor of per-class scores); "
                             f"the model gives {found}")
    out_layout = wanted.get("layout", layout)
    if out_layout not in LAYOUTS:
        raise OnnxModelError(f"{name}: unknown output layout {out_layout!r} (NCHW or NHWC)")
    return OnnxIO(image.name, layout, spec, scores[0].name, out_layout,
                  bool(wanted.get("align_corners", False)))


def _triple(value, key: str, name: str) -> tuple[float, float, float] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise OnnxModelError(f"{name}: \"{key}\" must be three numbers (R, G, B)")
    return tuple(float(v) for v in value)


def session_options(threads: int):
    """One model's SessionOptions: `threads` intra-op threads, one inter-op, quiet logs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 4  # fatal only: a refused size is reported by us, in one line
    return options


def probe_size(spec: InputSpec) -> tuple[int, int]:
    """The smallest input the size rule allows beyond a single cell (cheap to run)."""
    if spec.fixed_size:
        return spec.height, spec.width
    return 3 * spec.multiple, 3 * spec.multiple


class OnnxModel(Model):
    """An ONNX model through ONNX Runtime: a pool of `instances` sessions of `num_threads`.

    `InferenceSession.run` is thread-safe, yet one session's intra-op threads meet after every
    node like XNNPACK's, so (as for TFLite, see `TFLiteModel`) several single-thread sessions
    side by side keep the cores busier, and the pipeline's default layout (one single-thread
    session per DirectRunner thread) is kept. B0 at `fast` on udacity frames (544x960), two
    threads segmenting, pre- and post-processing included, 4 interleaved rounds on 2 shared
    cores: 2.41 frames/s for two 1-thread sessions, 1.47 for one 2-thread session (medians;
    the whole pipeline, 3 runs each: 339 against 378 ms per frame). docs/models.md has more.
    """

    def __init__(self, path: str, name: str, io: dict | None, num_threads: int = 1,
                 instances: int = 1, num_classes: int = 256, providers: tuple[str, ...] = ()):
        import onnxruntime as ort

        self.name, self.num_classes = name, num_classes
        with open(path, "rb") as f:
            content = f.read()
        chosen, message = choose_providers(providers or (PROVIDERS["cpu"],),
                                           ort.get_available_providers())
        if message:
            warn_once(f"{name}: {message}")
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        try:
            sessions = [ort.InferenceSession(content, sess_options=session_options(num_threads),
                                             providers=chosen) for _ in range(max(1, instances))]
        except Exception as exc:  # onnxruntime's own exception types differ between builds
            raise OnnxModelError(f"{name}: ONNX Runtime cannot load it: {_first_line(exc)}") from None
        self.providers = sessions[0].get_providers()
        if self.providers[0] != chosen[0]:
            warn_once(f"{name}: {chosen[0]} did not start (no usable GPU?): running on "
                      f"{self.providers[0]}")
        self.io = describe_io(sessions[0].get_inputs(), sessions[0].get_outputs(), io, name)
        self.input_spec = self.io.input_spec
        self.outputs_logits = True
        self.align_corners = self.io.align_corners
        for session in sessions:
            self._idle.put(session)
        self._check_scores()

    def _check_scores(self) -> None:
        """One run at the smallest size the rule allows: a refused size or an output that is not
        per-class scores is said now, at launch, rather than on every frame."""
        height, width = probe_size(self.input_spec)
        output = self.predict(self.input_spec.encode(np.zeros((1, height, width, 3), np.uint8)))
        if output.ndim != 4 or output.shape[-1] < 2:
            raise OnnxModelError(f"{self.name}: output {self.io.output_name!r} of shape "
                                 f"{list(output.shape)} is not per-class scores")
        if self.input_spec.fixed_size:
            self.score_size = (int(output.shape[1]), int(output.shape[2]))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """NxHxWx3 encoded input -> NxhxwxC float32 scores (one call for the whole batch)."""
        tensor = batch.astype(np.uint8 if self.input_spec.dtype == "uint8" else np.float32,
                              copy=False)
        if self.io.layout == "NCHW":
            tensor = tensor.transpose(0, 3, 1, 2)
        session = self._idle.get()  # waits while every session is busy
        try:
            (output,) = session.run([self.io.output_name],
                                    {self.io.input_name: np.ascontiguousarray(tensor)})
        except Exception as exc:
            raise OnnxModelError(f"{self.name}: the model refuses a {batch.shape[1]}x"
                                 f"{batch.shape[2]} input ({_size_rule(self.input_spec)}): "
                                 f"{_first_line(exc)}") from None
        finally:
            self._idle.put(session)
        output = np.asarray(output, np.float32)
        if output.ndim == 4 and self.io.output_layout == "NCHW":
            output = output.transpose(0, 2, 3, 1)
        return output


def _size_rule(spec: InputSpec) -> str:
    if spec.fixed_size:
        return f"its size is {spec.height}x{spec.width}"
    return f"its description says sides that are multiples of {spec.multiple}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def load_onnx(resolved: ResolvedModel, num_threads: int | None, instances: int, num_classes: int,
              providers: tuple[str, ...] = (), io_override: dict | None = None) -> OnnxModel:
    """The ONNX model of `resolved`, its registry or sidecar description under `io_override`."""
    return OnnxModel(resolved.path, resolved.name, merge_io(resolved.io, io_override),
                     num_threads or 1, instances, num_classes, providers)
