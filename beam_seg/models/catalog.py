"""The models beam_seg knows by name: where each is published, its sha256, its format and
its label set (`REGISTRY`), and the default (`DEFAULT_MODEL`). Data only; how a name becomes
a local file is `registry.resolve`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DEFAULT_MODEL = "cityscapes-edgetpu-slim"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    filename: str
    url: str | None  # None: not published anywhere; only BEAM_SEG_MODEL_DIR or the cache has it
    sha256: str | None
    format: str  # "tflite" | "savedmodel" | "frozen_graph" | "onnx"
    labels: str  # a built-in label set name, or a label file name found beside the model
    description: str
    labels_url: str | None = None
    labels_sha256: str | None = None
    io: dict | None = None  # an ONNX model's input/output description (a sidecar's content)
    how_to_get: str | None = None  # for a file without URL: how to make or fetch it
    exposure_mean: float | None = None  # brighter frames are darkened to it (`pixels.darken_to_mean`)


# EfficientViT-Seg-B0's tensors (exported with dynamic batch, height and width; see
# docs/models.md): ImageNet-normalised RGB, NCHW, sides multiples of 32 -> logits at stride 8.
EFFICIENTVIT_IO = {
    "input": {"name": "input", "layout": "NCHW", "multiple": 32, "scale": 1 / 255,
              "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "output": {"name": "logits", "align_corners": False},
}
EFFICIENTVIT_HOW = (
    "the ONNX file is not published: export it from the authors' checkpoint "
    "(github.com/mit-han-lab/efficientvit, see docs/models.md) and put it in a directory "
    "named by BEAM_SEG_MODEL_DIR")


_ZOO = "http://download.tensorflow.org/models/"
REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "cityscapes-edgetpu-slim",
            "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite",
            "https://github.com/google-coral/test_data/raw/master/"
            "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite",
            "322fe29945cb1693f426952f2a330ab67ea5678545ddee6f2548e0cfd0ca03e5",
            "tflite", "cityscapes",
            "EdgeTPU-DeepLab-slim, Cityscapes 19 classes, uint8 513x513 (default; 70.0% mIoU val)",
        ),
        ModelSpec(
            "pascal-mnv2-quant",
            "deeplabv3_mnv2_pascal_quant.tflite",
            "https://github.com/google-coral/test_data/raw/master/deeplabv3_mnv2_pascal_quant.tflite",
            "350af47fd346ea6d74b58833a351f583ba860e9806ec5bd292ff8d8f1f249398",
            "tflite", "pascal",
            "DeepLabv3 MobileNetV2, PASCAL VOC 21 classes, uint8 513x513",
        ),
        ModelSpec(
            "pascal-mnv2-float",
            "deeplabv3_257_mv_gpu.tflite",
            "https://storage.googleapis.com/download.tensorflow.org/models/tflite/gpu/"
            "deeplabv3_257_mv_gpu.tflite",
            "68a539782c2c6a72f8aac3724600124a85ed977162b44e84cbae5db717c933c6",
            "tflite", "pascal",
            "DeepLabv3 MobileNetV2, PASCAL VOC, float 257x257, logits output",
        ),
        ModelSpec(
            "ade20k-mnv2",
            "deeplabv3_mnv2_ade20k.tflite",
            "https://tfhub.dev/sayakpaul/lite-model/deeplabv3-mobilenetv2-ade20k/1/default/2"
            "?lite-format=tflite",
            "9476784566f88bf0bdc3169f0012fb7d08857b325811d8c1aaf5ada1c0d4e4f9",
            "tflite", "deeplabv3_mnv2_ade20k.labels.txt",
            "DeepLabv3 MobileNetV2, ADE20K 150 classes + other, float 513x513, logits output",
            labels_sha256="3601cbecdab401f50a61c1edf3403971b325ac263627eaaf9597c92f93f1a479",
        ),
        ModelSpec(
            "cityscapes-mnv3-small-zoo",
            "deeplab_mnv3_small_cityscapes_trainfine_2019_11_15.tar.gz",
            _ZOO + "deeplab_mnv3_small_cityscapes_trainfine_2019_11_15.tar.gz",
            None, "frozen_graph", "cityscapes",
            "DeepLab model zoo MobileNetV3-small, Cityscapes (TF1 frozen graph, any input size)",
        ),
        ModelSpec(
            "cityscapes-mnv2-zoo",
            "deeplabv3_mnv2_cityscapes_train_2018_02_05.tar.gz",
            _ZOO + "deeplabv3_mnv2_cityscapes_train_2018_02_05.tar.gz",
            None, "frozen_graph", "cityscapes",
            "DeepLab model zoo MobileNetV2, Cityscapes (TF1 frozen graph, any input size)",
        ),
        ModelSpec(
            "cityscapes-xception65-zoo",
            "deeplabv3_cityscapes_train_2018_02_06.tar.gz",
            _ZOO + "deeplabv3_cityscapes_train_2018_02_06.tar.gz",
            None, "frozen_graph", "cityscapes",
            "DeepLab model zoo Xception-65, Cityscapes (TF1 frozen graph, slow, accurate)",
        ),
        ModelSpec(
            "efficientvit-b0-cityscapes",
            "efficientvit_seg_b0_cityscapes.onnx",
            None,
            "77d4c3797b515dc19d2f04d38986841c1ce21760ef22459915162ea6e9508bfb",
            "onnx", "cityscapes",
            "EfficientViT-Seg-B0 (MIT Han Lab), Cityscapes 19 classes, ONNX, any size "
            "(multiples of 32; 75.65% mIoU val)",
            io=EFFICIENTVIT_IO, how_to_get=EFFICIENTVIT_HOW,
        ),
    ]
}
# Every Cityscapes model here learnt from Cityscapes' frames, which are dark: their mean grey
# level is about 70 of 255 (56-73 on the aachen frames), where sunny US dashcam frames average
# 62-152 (bdd100k) and KITTI's 84-103. Shown a bright frame, such a model calls clear sky
# vegetation. Darkening a frame that is brighter than that to a mean of 70 before inference
# (never brightening one) took the default's `fast` / `balanced` / `high` from 0.242 / 0.274
# / 0.284 to 0.285 / 0.309 / 0.328 mIoU on bdd100k and from 0.154 / 0.365 / 0.365 to 0.176 /
# 0.378 / 0.378 on kitti (aachen 0.498 / 0.604 / 0.670 -> 0.500 / 0.604 / 0.669), and
# EfficientViT-B0's `fast` from 0.354 to 0.383 on bdd100k (`make bench-quality`). Matched
# to 80 instead, the default's `fast` and `balanced` gained less on both dev sets (measured
# on a copy of the step in a script). docs/quality.md and docs/quality-log.md, "Exposure".
CITYSCAPES_MEAN_GREY = 70.0
REGISTRY = {name: replace(spec, exposure_mean=CITYSCAPES_MEAN_GREY) if spec.labels == "cityscapes" else spec
            for name, spec in REGISTRY.items()}

# Made on this machine from the float file by `python benchmarks/quantize_b0.py` (never
# downloaded, so no sha256); docs/models.md, "int8", says which convolutions stay float and why.
INT8_FILE = "efficientvit_seg_b0_cityscapes_int8.onnx"
REGISTRY["efficientvit-b0-cityscapes-int8"] = replace(
    REGISTRY["efficientvit-b0-cityscapes"], name="efficientvit-b0-cityscapes-int8",
    filename=INT8_FILE, sha256=None, description="EfficientViT-Seg-B0, int8 (static, mixed "
    "precision) for CPUs; make it with benchmarks/quantize_b0.py",
    how_to_get="make it from the float model: python benchmarks/quantize_b0.py")
