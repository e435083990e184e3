"""Packaging for beam_seg.

The same file serves a laptop install (`pip install -e .[dev]`) and Dataflow workers
(`--setup_file ./setup.py`), which is why runtime requirements stay here, not in a
requirements file: workers install exactly what the launcher declared.
"""

from setuptools import find_packages, setup

RUNTIME = [
    "apache-beam[gcp]>=2.60",
    "ai-edge-litert>=1.2",
    "flatbuffers>=23.5",  # edits a TFLite model's outputs on load (schema ships in ai-edge-litert)
    "numpy>=1.26",
    "pillow>=10.0",
    "opencv-python-headless>=4.8",  # SIMD resize, overlay and histogram for every frame
    "imageio-ffmpeg>=0.5",
    "pyarrow>=15.0",
    "duckdb>=1.1",
    "matplotlib>=3.8",
    "tqdm>=4.66",  # the live progress bar on a terminal
    "onnxruntime>=1.17",  # the second runtime: ONNX models such as EfficientViT-Seg-B0 (CPU build)
]
# TensorFlow is only needed for SavedModel and frozen-graph models; TFLite runs without it.
TENSORFLOW = ["tensorflow>=2.16"]
# playwright drives the system Chromium (`make install` apt-installs it) in the report's
# browser test; it never downloads a browser of its own here.
# onnx builds the tests' tiny ONNX models and the int8 model (python -m beam_seg.models.quantize).
DEV = ["onnx>=1.15", "pytest>=8", "pytest-xdist>=3.5", "ruff>=0.6", "gcp-storage-emulator>=2024.8", "playwright>=1.45"]

setup(
    name="beam_seg",
    version="0.1.0",
    description="Semantic segmentation of images and driving videos with DeepLab on Apache Beam",
    python_requires=">=3.10",
    packages=find_packages(include=["beam_seg", "beam_seg.*", "pipelines", "pipelines.*"]),
    install_requires=RUNTIME,
    extras_require={"tf": TENSORFLOW, "dev": DEV + TENSORFLOW},
    entry_points={"console_scripts": ["beam-seg=beam_seg.cli:main"]},
)
