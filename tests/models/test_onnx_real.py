"""EfficientViT-Seg-B0 through ONNX Runtime on real frames: the sky the default model misses,
and one cheap end-to-end run (video + still, worker processes, temporal fusion, resume, report)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from PIL import Image

from beam_seg import storage
from beam_seg.config import RunConfig
from beam_seg.labels import CITYSCAPES
from beam_seg.media.render import read_label_png
from beam_seg.models import load_label_set, load_model, resolve
from beam_seg.models.catalog import EFFICIENTVIT_IO, REGISTRY
from beam_seg.models.registry import sha256_of
from beam_seg.models.scoring import segment_frames

import gcs_emulator
from cli_runs import finished_run
from conftest import DATA, ROOT
from pipeline_helpers import coverage, label_maps, segment

pytestmark = pytest.mark.real_model

B0 = "efficientvit-b0-cityscapes"
SKY = CITYSCAPES.names.index("sky")
STREET = DATA / "images" / "dashcam" / "vehicle_test1.jpg"
CLIP = DATA / "videos" / "cityscapes_aachen_seq0001_512x256_17fps.mp4"


@pytest.fixture(scope="module")
def b0():
    resolved = resolve(B0)
    return load_model(resolved, 2, 1, load_label_set(resolved.labels).num_classes)


def fast_still_settings():
    return RunConfig(output="unused", model=B0, quality="fast").inference_settings()["image"]


def test_the_shared_b0_file_is_the_one_the_registry_pins():
    assert sha256_of(resolve(B0).path) == REGISTRY[B0].sha256


def test_b0_at_fast_labels_the_clear_sky_of_a_us_dashcam_still(b0):
    rgb = np.asarray(Image.open(STREET).convert("RGB"))
    (labels,) = segment_frames(b0, [rgb], fast_still_settings())
    top = labels[: labels.shape[0] // 3]
    assert (top == SKY).mean() >= 0.80  # the default model: about 5% sky, 33% traffic sign
    assert (top == CITYSCAPES.names.index("traffic sign")).mean() < 0.02


@pytest.fixture(scope="module")
def b0_run(tmp_path_factory):
    """Every 6th frame of the 512x256 aachen clip and one still, B0 at `fast` with temporal
    fusion, on two worker processes."""
    out = tmp_path_factory.mktemp("b0-run")
    args = (str(CLIP), str(STREET), "--model", B0, "--quality", "fast", "--temporal", "1",
            "--every-nth-frame", "6", "--direct_running_mode=multi_processing",
            "--direct_num_workers=2")
    return finished_run(out, *args), args


def test_b0_end_to_end_on_worker_processes_matches_the_model_in_process(b0_run, b0):
    run, _ = b0_run
    assert run.code == 0, run.lines
    rows = coverage(run.out)
    assert len(rows) == 5 + 1
    assert {r["model"] for r in rows} == {B0}
    maps = label_maps(run.out)
    (still,) = [m for name, m in maps.items() if "vehicle_test1" in name]
    (expected,) = segment_frames(b0, [np.asarray(Image.open(STREET).convert("RGB"))],
                                 fast_still_settings())
    assert np.array_equal(still, expected)
    assert "efficientvit-b0-cityscapes, quality fast" in run.stdout


def test_b0_run_resumes_and_reports(b0_run):
    run, args = b0_run
    again = finished_run(run.out, *args)
    assert again.code == 0
    assert any("0 inputs to process, 2 already done" in line for _, line in again.lines), again.lines
    proc = subprocess.run([sys.executable, "-m", "beam_seg.cli", "report", str(run.out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    html = (run.out / "report" / "report.html").read_text()
    assert B0 in html


def test_a_users_onnx_with_its_sidecar_on_a_bucket_segments_a_bucket(tmp_path, b0, monkeypatch):
    """gs:// all the way: the model and its sidecar description, the input and the outputs."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    still = DATA / "cityscapes" / "val" / "frankfurt" / "frankfurt_000000_000294_leftImg8bit.png"
    with gcs_emulator.running(tmp_path / "gcs") as gcs:
        model = gcs.upload(resolve(B0).path, gcs.uri("models", "b0.onnx"))
        storage.write_bytes(model + ".json", json.dumps(EFFICIENTVIT_IO).encode())
        source = gcs.upload(still, gcs.uri("in", still.name))
        assert segment([source], gcs.uri("out"), "--model", model, "--labels", "cityscapes",
                       "--quality", "fast") == 0
        (png,) = storage.list_files(gcs.uri("out", "labels") + "/**.png")
        remote = read_label_png(storage.read_bytes(png))
    (expected,) = segment_frames(b0, [np.asarray(Image.open(still).convert("RGB"))],
                                 fast_still_settings())
    np.testing.assert_array_equal(remote, expected)
