"""The default model's label maps are byte-identical to those of the code before the ONNX
runtime came (commit fec4f56): digests recorded then, with the command kept beside them in
tests/data/default_model_label_digests.json (`--quality fast --temporal 0`)."""

from __future__ import annotations

import hashlib
import json

import pytest

from cli_runs import finished_run
from conftest import DATA, ROOT

pytestmark = pytest.mark.real_model

RECORD = ROOT / "tests" / "data" / "default_model_label_digests.json"


def test_default_model_labels_match_the_digests_recorded_before_onnx(tmp_path):
    recorded = json.loads(RECORD.read_text())["sha256"]
    run = finished_run(tmp_path / "out", str(DATA / "images" / "dashcam" / "vehicle_test1.jpg"),
                       str(DATA / "videos" / "cityscapes_aachen_seq0001_512x256_17fps.mp4"),
                       "--quality", "fast", "--temporal", "0", "--every-nth-frame", "10")
    assert run.code == 0, run.lines
    digests = {f"{p.parent.name.rsplit('-', 1)[0]}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted((run.out / "labels").rglob("*.png"))}
    assert digests == recorded
