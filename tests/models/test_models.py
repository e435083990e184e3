"""Model registry, offline mirror, download cache and the loaders for every format."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from fakes import build_frozen_graph, build_saved_model, expected_labels

from beam_seg.labels import CITYSCAPES, parse_label_file
from beam_seg.media.images import decode_image
from beam_seg.models import DEFAULT_MODEL, REGISTRY, ModelNotFoundError, load_label_set, load_model, resolve
from beam_seg.models.scoring import segment_frames

from conftest import DATA, MODELS

pytestmark = pytest.mark.real_model  # the second tier: runs the real model

STREET = DATA / "images" / "dashcam" / "vehicle_test1.jpg"


def test_registry_name_resolves_through_the_offline_mirror():
    resolved = resolve(DEFAULT_MODEL)
    expected = MODELS / "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite"
    assert Path(resolved.path).resolve() == expected.resolve()
    assert resolved.labels == "cityscapes"


def test_a_copy_of_a_registry_file_is_darkened_as_the_registry_model_and_other_files_are_not(
        tmp_path, tiny_model):
    registry = resolve(DEFAULT_MODEL)
    assert registry.exposure_mean == REGISTRY[DEFAULT_MODEL].exposure_mean is not None
    copy = tmp_path / "my_model.tflite"
    copy.write_bytes(Path(registry.path).read_bytes())
    assert resolve(str(copy), "cityscapes").exposure_mean == registry.exposure_mean
    assert resolve(tiny_model[1], "cityscapes").exposure_mean is None  # another file: its own model
    assert REGISTRY["pascal-mnv2-quant"].exposure_mean is None  # not trained on Cityscapes


def test_downloads_and_cache_copies_are_verified_by_checksum(monkeypatch, tmp_path):
    """Without a mirror, a model comes from the cache or its URL, and only with the right sha256.

    The URL here is a local path (read through Beam's FileSystems like gs://), since these
    machines cannot reach the real download hosts.
    """
    monkeypatch.delenv("BEAM_SEG_MODEL_DIR")
    cache, remote = tmp_path / "cache", tmp_path / "remote"
    remote.mkdir()
    monkeypatch.setenv("BEAM_SEG_CACHE_DIR", str(cache))
    spec = REGISTRY["pascal-mnv2-quant"]
    monkeypatch.setitem(REGISTRY, spec.name, dataclasses.replace(spec, url=str(remote / spec.filename)))
    good = (MODELS / spec.filename).read_bytes()

    (remote / spec.filename).write_bytes(good[:-1])  # a truncated download
    with pytest.raises(ModelNotFoundError, match="checksum mismatch"):
        resolve(spec.name)
    assert not (cache / spec.filename).exists()

    (remote / spec.filename).write_bytes(good)
    assert resolve(spec.name).path == str(cache / spec.filename)
    assert (cache / spec.filename).read_bytes() == good

    (remote / spec.filename).unlink()  # now served from the cache alone
    assert resolve(spec.name).path == str(cache / spec.filename)
    (cache / spec.filename).write_bytes(b"corrupt")  # a damaged cache copy is not trusted
    with pytest.raises(ModelNotFoundError):
        resolve(spec.name)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ModelNotFoundError, match="unknown model 'no-such-model'"):
        resolve("no-such-model")


def test_label_files_parse_plain_and_numbered_formats():
    pascal = parse_label_file((MODELS / "pascal_voc.labels.txt").read_text(), "pascal")
    assert pascal.num_classes == 21 and pascal.names[12] == "dog"
    ade = load_label_set("ade20k")
    assert ade.num_classes == 151 and ade.names[7] == "road"
    assert CITYSCAPES.names[0] == "road" and CITYSCAPES.palette[13].tolist() == [0, 0, 142]


def test_frozen_graph_and_zoo_tarball_load_and_segment(tmp_path):
    rgb = decode_image(STREET.read_bytes())
    for path in build_frozen_graph(tmp_path):
        model = load_model(resolve(str(path), "cityscapes"))
        labels = segment_frames(model, [rgb])[0]
        np.testing.assert_array_equal(labels, expected_labels(rgb))


@pytest.mark.parametrize("logits", [False, True], ids=["ids", "logits"])
def test_saved_model_loads_and_segments(tmp_path, logits):
    rgb = decode_image(STREET.read_bytes())
    model = load_model(resolve(str(build_saved_model(tmp_path, logits)), "cityscapes"))
    assert model.outputs_logits is logits
    labels = segment_frames(model, [rgb])[0]
    agreement = (labels == expected_labels(rgb)).mean()
    assert agreement == 1.0 if not logits else agreement > 0.999


@pytest.mark.parametrize("kind", ["frozen_pb", "zoo_tarball", "saved_model"])
def test_built_models_run_through_the_segment_command(tmp_path, kind):
    """`beam-seg segment --model PATH` with models the test builds, DeepLab tensor names and all."""
    from beam_seg import naming

    from pipeline_helpers import label_maps, segment

    pb, tarball = build_frozen_graph(tmp_path)
    model = {"frozen_pb": pb, "zoo_tarball": tarball, "saved_model": build_saved_model(tmp_path)}[kind]
    out = tmp_path / "out"
    assert segment([STREET], out, "--model", str(model), "--labels", "cityscapes") == 0
    labels = label_maps(out)[f"labels/{naming.input_id(str(STREET))}/000000.png"]
    np.testing.assert_array_equal(labels, expected_labels(decode_image(STREET.read_bytes())))


def test_interpreter_pool_gives_every_thread_its_own_frames_labels():
    """Threads sharing one pooled TFLite model each get the labels of their own frames."""
    import threading

    resolved = resolve(DEFAULT_MODEL)
    frames = [np.ascontiguousarray(np.roll(decode_image(STREET.read_bytes()), 97 * i, axis=1))
              for i in range(6)]
    expected = segment_frames(load_model(resolved, num_threads=1), frames)
    pooled = load_model(resolved, num_threads=1, instances=2)
    assert pooled.instances == 2
    results: dict[int, np.ndarray] = {}

    def work(index: int) -> None:
        for _ in range(3):
            results[index] = segment_frames(pooled, [frames[index]])[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(frames))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not np.array_equal(expected[0], expected[1])  # a mix-up between threads would show
    for index, labels in enumerate(expected):
        np.testing.assert_array_equal(results[index], labels, err_msg=f"frame {index}")


def test_interpreter_pool_keeps_to_a_quarter_of_the_memory():
    """ADE20K's float logits make each interpreter big (~1 GB of tensors): a request for
    many is cut to what fits, never below one."""
    from beam_seg.models.loaders import affordable_interpreters, memory_budget

    gib = 1 << 30
    assert affordable_interpreters(8, 40 << 20, 6 * gib) == 8
    assert affordable_interpreters(8, gib, 6 * gib) == 6
    assert affordable_interpreters(4, 10 * gib, 6 * gib) == 1
    assert affordable_interpreters(4, gib, None) == 4
    model = load_model(resolve("ade20k-mnv2"), num_threads=1, instances=64)
    each = model.interpreter_bytes
    assert each > 500 << 20
    assert 1 <= model.instances < 64
    assert model.instances == 1 or model.instances * each <= memory_budget()


def test_a_model_file_given_by_path_is_hashed_once_however_often_it_is_resolved(
        tmp_path, tiny_model, monkeypatch):
    """Every DoFn's setup resolves the model again: a large file must not be re-read each time,
    but a new version of it must be."""
    from beam_seg.models import registry

    hashed = []
    real = registry.sha256_of
    monkeypatch.setattr(registry, "sha256_of", lambda path: hashed.append(path) or real(path))
    model = tmp_path / "mine.tflite"
    model.write_bytes(Path(tiny_model[1]).read_bytes())
    for _ in range(3):
        assert resolve(str(model), "cityscapes").exposure_mean is None
    assert hashed.count(str(model)) == 1
    model.write_bytes(Path(resolve(DEFAULT_MODEL).path).read_bytes())  # a new version: hashed again
    assert resolve(str(model), "cityscapes").exposure_mean == REGISTRY[DEFAULT_MODEL].exposure_mean
    assert hashed.count(str(model)) == 2
