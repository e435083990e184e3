"""An int8 EfficientViT-Seg-B0 from the float model (registry `efficientvit-b0-cityscapes-int8`):
static quantisation with `onnxruntime.quantization`, some convolutions kept in float.

Why some stay float (docs/models.md, "int8"): BatchNorm folded into B0's convolutions leaves
some activation tensors whose channels span very different ranges (in one, channels peak
between 1.2 and 259). One uint8 scale per tensor leaves the small ones a few levels, and the
depthwise weights that follow (up to 78) amplify the error: quantising only
`stages.0/op_list.0/.../inverted_conv` leaves 10% of pixels agreeing with float. The high-
resolution stem and stages 0-1 and the MBConvs' depthwise and projection convolutions are
such tensors' producers or consumers; everything else (the attention's qkv/aggregation/
projection convolutions, the expansion convolutions of stages 2-3, the head's inputs and
outputs) quantises well. Attention MatMul/Div and the activations stay float (`Conv` only).

    python benchmarks/quantize_b0.py [--frames GLOB ...] [--output FILE] [--variant mixed]
        [--check GLOB ...]   # then its argmax agreement with float on these frames

Default calibration frames: KITTI and the dashcam stills of $BEAM_SEG_SHARED/data (not
bdd100k, so that bdd100k stays held out), each at the working size `--quality fast` gives it.
Writes into the model cache (model files are never committed). Needs the `onnx` package.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
from collections.abc import Iterator

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from beam_seg.media.pixels import resize_linear
from beam_seg.models.anysize import SIZE_PRESETS
from beam_seg.models.catalog import INT8_FILE
from beam_seg.models.interface import InputSpec
from beam_seg.models.onnx_runtime import load_onnx
from beam_seg.models.registry import cache_dir, resolve

FLOAT_MODEL = "efficientvit-b0-cityscapes"
# Convolutions kept in float in the `mixed` variant (substrings of node names).
FLOAT_CONVS = ("/input_stem/", "/stages.0/", "/stages.1/", "/main/depth_conv/",
               "/main/point_conv/", "/head/middle/op_list.0/main/inverted_conv/")
VARIANTS = {
    "mixed": dict(op_types_to_quantize=["Conv"], keep_float=FLOAT_CONVS),  # the kept one
    "conv": dict(op_types_to_quantize=["Conv"], keep_float=()),  # every conv: broken
    "all": dict(op_types_to_quantize=None, keep_float=()),  # every operator: broken
}


def default_frames() -> list[str]:
    shared = os.environ.get("BEAM_SEG_SHARED", os.path.join(os.getcwd(), "..", "shared"))
    data = os.path.join(shared, "data")
    return sorted(glob.glob(os.path.join(data, "kitti", "*_leftImg8bit.png"))) + \
        sorted(glob.glob(os.path.join(data, "images", "dashcam", "*.jpg")))


def calibration_inputs(paths: list[str], spec: InputSpec) -> Iterator[np.ndarray]:
    """Each frame at its `fast` working size, encoded and NCHW, as the model will see it."""
    from PIL import Image

    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        (width, height), = SIZE_PRESETS["fast"].sizes(rgb.shape[1], rgb.shape[0], spec.multiple)
        yield np.ascontiguousarray(spec.encode(resize_linear(rgb, width, height)[None])
                                   .transpose(0, 3, 1, 2))


def float_nodes(model_path: str, keep_float: tuple[str, ...]) -> list[str]:
    """Names of the Conv nodes that `keep_float` names (by substring)."""
    import onnx

    graph = onnx.load(model_path).graph
    return [n.name for n in graph.node
            if n.op_type == "Conv" and any(part in n.name for part in keep_float)]


def quantize(float_path: str, output: str, frames: list[str], input_name: str,
             spec: InputSpec, variant: str = "mixed") -> str:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._inputs = calibration_inputs(frames, spec)

        def get_next(self):
            tensor = next(self._inputs, None)
            return None if tensor is None else {input_name: tensor}

    options = VARIANTS[variant]
    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        quant_pre_process(float_path, prepared, skip_symbolic_shape=True)
        partial = output + ".partial"
        quantize_static(prepared, partial, Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=options["op_types_to_quantize"],
                        nodes_to_exclude=float_nodes(prepared, options["keep_float"]),
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        os.replace(partial, output)
    return output


def agreement(float_path: str, int8_path: str, paths: list[str], input_name: str,
              spec: InputSpec) -> list[float]:
    """Per frame, the share of score-grid cells where both models' argmax class agrees."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = [ort.InferenceSession(p, options, providers=["CPUExecutionProvider"])
                for p in (float_path, int8_path)]
    return [float(np.mean(np.equal(*(s.run(None, {input_name: x})[0].argmax(1)
                                     for s in sessions))))
            for x in calibration_inputs(paths, spec)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/quantize_b0.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--frames", nargs="*", help="calibration images (default: KITTI, dashcam)")
    parser.add_argument("--output", help="where to write it (default: the model cache)")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="mixed",
                        help="mixed (kept), or the broken conv/all of docs/models.md")
    parser.add_argument("--check", nargs="*", metavar="GLOB",
                        help="then print its agreement with float on these frames")
    args = parser.parse_args(argv)
    frames = [p for pattern in args.frames for p in sorted(glob.glob(pattern))] if args.frames \
        else default_frames()
    if not frames:
        print("quantize: error: no calibration frames (set BEAM_SEG_SHARED or give --frames)",
              file=sys.stderr)
        return 2
    source = resolve(FLOAT_MODEL)
    model = load_onnx(source, 1, 1, 19)  # its own description of the input
    output = args.output or os.path.join(cache_dir(), INT8_FILE)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    quantize(source.path, output, frames, model.io.input_name, model.input_spec, args.variant)
    print(f"wrote {output} ({args.variant}, calibrated on {len(frames)} frames)")
    checks = [p for pattern in args.check or [] for p in sorted(glob.glob(pattern))]
    if checks:
        shares = agreement(source.path, output, checks, model.io.input_name, model.input_spec)
        print(f"agreement with float on {len(checks)} frames: mean {np.mean(shares):.4f}, "
              f"lowest {min(shares):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
