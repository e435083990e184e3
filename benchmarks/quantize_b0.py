"""An int8 EfficientViT-Seg-B0 from the float model: the experiment behind docs/models.md's
"int8" section. NOT KEPT: every variant tried lost nearly all accuracy (mIoU 0.01-0.05 against
0.35-0.70 for float), so there is no registry entry for it.

Static quantisation with `onnxruntime.quantization`: QDQ format, int8 weights per channel,
uint8 activations (int8 activations ran 2.6x slower than float here) calibrated (MinMax) on
real driving frames, each at the working size `--quality fast` gives it (models/anysize.py).
Written into the model cache (model files are never committed); score it with
`python benchmarks/dev_sets.py --model PATH --presets fast` after writing a sidecar.

    python benchmarks/quantize_b0.py [--frames GLOB ...] [--output FILE]

Default frames: the shared dev sets ($BEAM_SEG_SHARED/data/bdd100k/*.jpg and
kitti/*_leftImg8bit.png). Needs the `onnx` package (the dev extra) besides onnxruntime.
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
from beam_seg.models.loaders import InputSpec
from beam_seg.models.onnx_runtime import load_onnx
from beam_seg.models.registry import cache_dir, resolve

FLOAT_MODEL = "efficientvit-b0-cityscapes"
INT8_FILE = "efficientvit_seg_b0_cityscapes_int8.onnx"


def default_frames() -> list[str]:
    shared = os.environ.get("BEAM_SEG_SHARED", os.path.join(os.getcwd(), "..", "shared"))
    data = os.path.join(shared, "data")
    return sorted(glob.glob(os.path.join(data, "bdd100k", "*.jpg"))) + \
        sorted(glob.glob(os.path.join(data, "kitti", "*_leftImg8bit.png")))


def calibration_inputs(paths: list[str], spec: InputSpec) -> Iterator[np.ndarray]:
    """Each frame at its `fast` working size, encoded and NCHW, as the model will see it."""
    from PIL import Image

    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        (width, height), = SIZE_PRESETS["fast"].sizes(rgb.shape[1], rgb.shape[0], spec.multiple)
        yield np.ascontiguousarray(spec.encode(resize_linear(rgb, width, height)[None])
                                   .transpose(0, 3, 1, 2))


def quantize(float_path: str, output: str, frames: list[str], input_name: str,
             spec: InputSpec) -> str:
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

    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        quant_pre_process(float_path, prepared, skip_symbolic_shape=True)
        partial = output + ".partial"
        quantize_static(prepared, partial, Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        os.replace(partial, output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/quantize_b0.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--frames", nargs="*", help="calibration images (default: the dev sets)")
    parser.add_argument("--output", help="where to write it (default: the model cache)")
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
    quantize(source.path, output, frames, model.io.input_name, model.input_spec)
    print(f"wrote {output} (calibrated on {len(frames)} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
