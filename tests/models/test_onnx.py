"""The ONNX Runtime loader with tiny ONNX models built in the test (tests/fakes.py):
layouts, the any-size rule, descriptions from sidecars and flags, refusals, providers."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from fakes import (
    build_onnx_ids_only,
    build_onnx_nchw,
    build_onnx_nhwc,
    expected_labels,
)
from PIL import Image

from beam_seg.job.launch import run
from beam_seg.models import ModelNotFoundError, load_model, onnx_runtime, resolve
from beam_seg.models.anysize import SizePreset
from beam_seg.models.onnx_runtime import (
    OnnxModelError,
    choose_providers,
    load_io_override,
    parse_providers,
)
from beam_seg.models.scoring import InferenceSettings, segment_frames

UNIT = {"scale": 1 / 255}  # the tiny float models read x/255


def _sidecar(model, **input_keys) -> None:
    model.with_name(model.name + ".json").write_text(json.dumps({"input": input_keys}))


def _red_left_frame(width: int, height: int) -> np.ndarray:
    frame = np.full((height, width, 3), 40, np.uint8)
    frame[:, : width // 2, 0] = 220
    return frame


def _recording(model):
    """The model, its predict wrapped to note each batch's (height, width)."""
    seen = []
    predict = model.predict
    model.predict = lambda batch: seen.append(batch.shape[1:3]) or predict(batch)
    return model, seen


def test_nchw_any_size_model_runs_at_multiples_of_its_rule(tmp_path):
    path = build_onnx_nchw(tmp_path, multiple=16, stride=2)
    _sidecar(path, multiple=16, **UNIT)
    resolved = resolve(str(path), "cityscapes")
    assert resolved.format == "onnx" and resolved.io["input"]["multiple"] == 16
    model, seen = _recording(load_model(resolved, num_classes=19))
    spec = model.describe().input_spec
    assert not spec.fixed_size and spec.multiple == 16
    frame = _red_left_frame(150, 90)
    settings = InferenceSettings(sizes=SizePreset(min_height=64))
    (labels,) = segment_frames(model, [frame], settings)
    assert seen and all(h % 16 == 0 and w % 16 == 0 for h, w in seen)
    assert seen == [(96, 144)]  # 150x90, each side rounded to the nearest multiple of 16
    assert labels.shape == (90, 150)
    inner = np.s_[:, 4:71], np.s_[:, 79:]  # away from the red edge at x = 75
    truth = expected_labels(frame)
    for part in inner:
        assert (labels[part] == truth[part]).mean() > 0.99


def test_working_sizes_follow_the_source_and_the_rule():
    preset = SizePreset(scales=(1.0, 1.25), min_height=512, max_pixels=1024 * 2048)
    assert preset.sizes(1280, 720, 32) == [(1280, 704), (1600, 896)]
    assert preset.sizes(2048, 1024, 32)[0] == (2048, 1024)
    assert preset.sizes(256, 128, 32)[0] == (1024, 512)  # small frames enlarged
    assert preset.sizes(4096, 2048, 32)[0] == (2048, 1024)  # large ones shrunk
    assert all(w % 32 == 0 and h % 32 == 0 for w, h in preset.sizes(1224, 370, 32))
    wide = SizePreset(scales=(1.0, 1.5), wide_scales=(1.0,))
    assert wide.sizes(1224, 370, 32) == [(1696, 512)]  # 3.3:1: only the wide scales
    assert wide.sizes(1280, 720, 32) == [(1280, 704), (1920, 1088)]


def test_nhwc_fixed_size_uint8_model_needs_no_description(tmp_path):
    model = load_model(resolve(str(build_onnx_nhwc(tmp_path, size=64)), "cityscapes"), num_classes=19)
    info = model.describe()
    assert model.io.layout == "NHWC" and info.input_spec.fixed_size
    assert (info.input_spec.height, info.input_spec.dtype) == (64, "uint8")
    assert info.score_size == (64, 64)
    frame = _red_left_frame(64, 64)
    (labels,) = segment_frames(model, [frame], InferenceSettings(sizes=SizePreset()))
    assert (labels == expected_labels(frame)).mean() > 0.98


def test_a_model_without_scores_is_refused_clearly(tmp_path):
    path = build_onnx_ids_only(tmp_path)
    _sidecar(path, **UNIT)
    with pytest.raises(OnnxModelError, match=r"no score output .*ids tensor\(int64\) rank 3"):
        load_model(resolve(str(path), "cityscapes"), num_classes=19)


def test_a_size_the_model_refuses_is_said_at_load(tmp_path):
    path = build_onnx_nchw(tmp_path, multiple=32)
    _sidecar(path, multiple=16, **UNIT)  # wrong: the model needs multiples of 32
    with pytest.raises(OnnxModelError, match=r"refuses a 48x48 input .*multiples of 16"):
        load_model(resolve(str(path), "cityscapes"), num_classes=19)


def test_unknown_layout_and_missing_normalisation_are_refused(tmp_path):
    path = build_onnx_nchw(tmp_path)
    _sidecar(path, layout="CHWN", **UNIT)
    with pytest.raises(OnnxModelError, match="unknown input layout 'CHWN'"):
        load_model(resolve(str(path), "cityscapes"), num_classes=19)
    _sidecar(path, multiple=8)
    with pytest.raises(OnnxModelError, match="say how pixels are normalised"):
        load_model(resolve(str(path), "cityscapes"), num_classes=19)


def test_the_flag_description_goes_over_the_sidecar(tmp_path):
    path = build_onnx_nchw(tmp_path, multiple=8)
    _sidecar(path, layout="CHWN", **UNIT)
    override = load_io_override('{"input": {"layout": "NCHW", "multiple": 8}}')
    model = load_model(resolve(str(path), "cityscapes"), num_classes=19, io_override=override)
    assert model.io.layout == "NCHW" and model.input_spec.multiple == 8
    with pytest.raises(OnnxModelError, match="neither JSON nor a readable file"):
        load_io_override(str(tmp_path / "missing.json"))


def test_providers_fall_back_to_the_cpu_with_one_line(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(onnx_runtime, "_said", set())  # said once per process: start afresh
    assert parse_providers("cuda,tensorrt") == ("CUDAExecutionProvider", "TensorrtExecutionProvider")
    with pytest.raises(OnnxModelError, match="unknown ONNX provider 'gpu'"):
        parse_providers("gpu")
    chosen, message = choose_providers(("CUDAExecutionProvider",), ["CUDAExecutionProvider",
                                                                     "CPUExecutionProvider"])
    assert chosen == ["CUDAExecutionProvider", "CPUExecutionProvider"] and message is None
    chosen, message = choose_providers(("TensorrtExecutionProvider", "CUDAExecutionProvider"),
                                       ["CPUExecutionProvider"])
    assert chosen == ["CPUExecutionProvider"] and "running on the CPU" in message
    with caplog.at_level(logging.WARNING, logger="beam_seg"):
        for _ in range(2):  # the launcher's check, then the worker's load
            model = load_model(resolve(str(build_onnx_nhwc(tmp_path)), "cityscapes"),
                               num_classes=19, providers=parse_providers("cuda"))
    assert model.providers == ["CPUExecutionProvider"]  # no GPU on the test machines
    lines = [r.getMessage() for r in caplog.records if "CUDAExecutionProvider" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]


def test_cli_refuses_a_model_without_scores_in_one_line(tmp_path, capsys):
    path = build_onnx_ids_only(tmp_path)
    _sidecar(path, **UNIT)
    still = tmp_path / "still.png"
    Image.fromarray(_red_left_frame(64, 32)).save(still)
    code = run([str(still), "--model", str(path), "--labels", "cityscapes", "--output",
                str(tmp_path / "out")], save_main_session=False)
    err = capsys.readouterr().err
    assert code == 2
    errors = [line for line in err.splitlines() if line.strip()]
    assert len(errors) == 1 and "no score output" in errors[0], err
    assert not (tmp_path / "out").exists()  # refused before any work


def test_b0_without_a_mirror_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.delenv("BEAM_SEG_MODEL_DIR", raising=False)
    monkeypatch.setenv("BEAM_SEG_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ModelNotFoundError, match="not published: export it from the authors'"):
        resolve("efficientvit-b0-cityscapes")


def test_onnx_spec_on_a_tflite_model_is_refused_in_one_line(tmp_path, capsys):
    still = tmp_path / "still.png"
    Image.fromarray(_red_left_frame(64, 32)).save(still)
    code = run([str(still), "--onnx-spec", '{"input": {}}', "--output", str(tmp_path / "out")],
               save_main_session=False)
    err = capsys.readouterr().err
    assert code == 2 and "--onnx-spec describes ONNX models" in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1
