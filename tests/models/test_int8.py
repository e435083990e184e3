"""The int8 EfficientViT-Seg-B0 (`benchmarks/quantize_b0.py`, docs/models.md "int8"): made from
the float file into the cache, found there by its registry name, and labelling as float does."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from beam_seg.config import RunConfig
from beam_seg.models import ModelNotFoundError, load_label_set, load_model, resolve
from beam_seg.models.catalog import INT8_FILE, REGISTRY
from beam_seg.models.scoring import segment_frames

from conftest import DATA, ROOT

INT8 = "efficientvit-b0-cityscapes-int8"
B0 = "efficientvit-b0-cityscapes"


def test_the_int8_entry_is_made_here_not_downloaded_and_says_how(monkeypatch, tmp_path):
    spec = REGISTRY[INT8]
    assert (spec.url, spec.sha256, spec.filename) == (None, None, INT8_FILE)
    assert (spec.io, spec.labels) == (REGISTRY[B0].io, REGISTRY[B0].labels)
    monkeypatch.setenv("BEAM_SEG_MODEL_DIR", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=r"benchmarks/quantize_b0\.py"):
        resolve(INT8)


@pytest.fixture(scope="module")
def int8_in_cache(tmp_path_factory):
    """The command as a user runs it, calibrated on two dashcam stills (not bdd100k)."""
    cached = tmp_path_factory.getbasetemp() / "model-cache" / INT8_FILE  # conftest's cache
    stills = [str(DATA / "images" / "dashcam" / name) for name in
              ("vehicle_test2.jpg", "lanes_solidWhiteRight.jpg")]
    done = subprocess.run([sys.executable, "benchmarks/quantize_b0.py", "--frames", *stills,
                           "--output", str(cached)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return cached


def fast_labels(name: str, rgb: np.ndarray) -> np.ndarray:
    resolved = resolve(name)
    model = load_model(resolved, 1, 1, load_label_set(resolved.labels).num_classes)
    settings = RunConfig(output="unused", model=name, quality="fast").inference_settings()
    (labels,) = segment_frames(model, [rgb], settings["image"])
    return labels


@pytest.mark.real_model
def test_int8_labels_a_held_out_bdd_frame_as_the_float_model_does(int8_in_cache):
    assert resolve(INT8).path == str(int8_in_cache)
    frame = sorted((DATA / "bdd100k").glob("*.jpg"))[3]
    rgb = np.asarray(Image.open(frame).convert("RGB"))
    agreement = (fast_labels(INT8, rgb) == fast_labels(B0, rgb)).mean()
    # With these two calibration stills: 0.97 on this frame's score grid; with every Conv
    # quantised (`--variant conv`, the old recipe), 0.28.
    assert agreement >= 0.95
