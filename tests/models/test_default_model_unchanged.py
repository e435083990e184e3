"""The default model's label maps are byte-identical to those of the code before the ONNX
runtime came (commit fec4f56): digests recorded then, with the command kept beside them in
tests/data/default_model_label_digests.json (`--quality fast --temporal 0`).

Since then one step was added on purpose: frames brighter than Cityscapes' are darkened to
its mean grey level before inference (`ModelSpec.exposure_mean`). With that step turned off
the labels are still those bytes; with it on, the bright dashcam still's labels change and
the Cityscapes clip's frames, about as dark as Cityscapes', change far less."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from beam_seg.models import DEFAULT_MODEL
from beam_seg.models.catalog import REGISTRY

from cli_runs import run_in_process
from conftest import DATA, ROOT

pytestmark = pytest.mark.real_model

RECORD = ROOT / "tests" / "data" / "default_model_label_digests.json"
INPUTS = (DATA / "images" / "dashcam" / "vehicle_test1.jpg",
          DATA / "videos" / "cityscapes_aachen_seq0001_512x256_17fps.mp4")


def _labels(out) -> dict[str, np.ndarray]:
    return {f"{p.parent.name.rsplit('-', 1)[0]}/{p.name}": np.asarray(Image.open(p))
            for p in sorted((out / "labels").rglob("*.png"))}


def _exposure_step_off(monkeypatch) -> None:
    spec = dataclasses.replace(REGISTRY[DEFAULT_MODEL], exposure_mean=None)
    monkeypatch.setitem(REGISTRY, DEFAULT_MODEL, spec)


def _run(out) -> dict[str, np.ndarray]:
    code, stdout, stderr = run_in_process("segment", *INPUTS, "--output", out, "--quality", "fast",
                                          "--temporal", "0", "--every-nth-frame", "10")
    assert code == 0, stdout + stderr
    return _labels(out)


def test_without_the_exposure_step_the_labels_match_the_digests_recorded_before_onnx(tmp_path, monkeypatch):
    recorded = json.loads(RECORD.read_text())["sha256"]
    _exposure_step_off(monkeypatch)
    _run(tmp_path / "out")
    digests = {f"{p.parent.name.rsplit('-', 1)[0]}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted((tmp_path / "out" / "labels").rglob("*.png"))}
    assert digests == recorded


def test_the_exposure_step_changes_the_bright_still_and_barely_the_cityscapes_frames(tmp_path, monkeypatch):
    assert REGISTRY[DEFAULT_MODEL].exposure_mean is not None
    darkened = _run(tmp_path / "on")
    _exposure_step_off(monkeypatch)
    plain = _run(tmp_path / "off")
    assert sorted(darkened) == sorted(plain)
    changed = {name: float(np.mean(darkened[name] != plain[name])) for name in plain}
    still = changed.pop("vehicle_test1/000000.png")  # a sunny still, mean grey 126: halved
    assert still > 0.1
    # the clip's frames: mean grey 73, 73 (darkened by 4%: boundaries move) and 70 (untouched)
    assert changed["cityscapes_aachen_seq0001_512x256_17fps/000020.png"] == 0.0
    assert 0 < max(changed.values()) < still / 3
