"""gs:// end to end against a local GCS emulator: inputs, outputs and models on a bucket.

Beam's GCSFileSystem talks to the emulator through STORAGE_EMULATOR_HOST (see gcs_emulator.py);
nothing in the library knows it is an emulator.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import duckdb
import numpy as np
import pytest
from fakes import build_saved_model, expected_labels

from beam_seg import naming, storage
from beam_seg.media import video
from beam_seg.media.images import decode_image
from beam_seg.models import ModelNotFoundError, load_model, resolve
from beam_seg.models.scoring import segment_frames

import gcs_emulator
from conftest import DATA, MODELS
from pipeline_helpers import segment

pytestmark = pytest.mark.real_model  # the second tier: runs the real model

AACHEN = DATA / "videos" / "cityscapes_aachen_seq0001_512x256_17fps.mp4"
STILL = DATA / "images" / "dashcam" / "vehicle_test2.jpg"
DEFAULT_TFLITE = MODELS / "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    with gcs_emulator.running(tmp_path_factory.mktemp("gcs")) as emulator:
        yield emulator


@pytest.fixture()
def input_cache(tmp_path, monkeypatch):
    """Remote-input copies go to this test's own temp dir, not the machine's shared one."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return tmp_path / "tmp" / "beam_seg_inputs"


def _coverage(pattern: str) -> list[dict]:
    rel = duckdb.sql(f"SELECT * FROM read_parquet('{pattern}') ORDER BY input_id, frame_index")
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def _download_tree(uri: str, dest: Path) -> Path:
    """Mirror everything under a gs:// prefix into a local directory."""
    prefix = uri.rstrip("/") + "/"
    for remote in storage.list_files(prefix + "**"):
        local = dest / remote[len(prefix):]
        local.parent.mkdir(parents=True, exist_ok=True)
        storage.download_file(remote, str(local))
    return dest


def test_segment_from_and_to_a_bucket_matches_a_local_run(gcs, tmp_path, input_cache):
    inputs = {gcs.upload(AACHEN, gcs.uri("in", AACHEN.name)): AACHEN,
              gcs.upload(STILL, gcs.uri("in", STILL.name)): STILL}
    args = ("--segment-frames", "8")  # 4 segments: exercises the remote segment files and their cleanup
    assert segment([gcs.uri("in", "*")], gcs.uri("out"), *args) == 0
    assert segment([AACHEN, STILL], tmp_path / "local", *args) == 0

    remote = _download_tree(gcs.uri("out"), tmp_path / "remote")
    local = tmp_path / "local"
    # Output names carry a hash of the input's URI: map the bucket's ids to the local ones.
    ids = {naming.input_id(uri): naming.input_id(str(path)) for uri, path in inputs.items()}

    def renamed(rel: str) -> str:
        for remote_id, local_id in ids.items():
            rel = rel.replace(remote_id, local_id)
        return rel

    remote_files = {renamed(str(p.relative_to(remote))): p for p in remote.rglob("*") if p.is_file()}
    local_files = {str(p.relative_to(local)): p for p in local.rglob("*") if p.is_file()}
    assert remote_files.keys() == local_files.keys()
    assert not any(name.startswith(("_work/", "errors/")) for name in remote_files)

    labels = [name for name in local_files if name.startswith("labels/")]
    assert len(labels) == 31
    for name in labels + [n for n in local_files if n.startswith("overlays/")]:
        assert remote_files[name].read_bytes() == local_files[name].read_bytes(), name

    remote_rows = _coverage(f"{remote}/coverage/*/*.parquet")
    local_rows = _coverage(f"{local}/coverage/*/*.parquet")
    assert len(remote_rows) == len(local_rows) == 31
    remote_by_local_id = {ids[naming.input_id(uri)]: uri for uri in inputs}
    for got, want in zip(sorted(remote_rows, key=lambda r: (ids[r["input_id"]], r["frame_index"])),
                         local_rows, strict=True):
        assert got["source_uri"] == remote_by_local_id[want["input_id"]]
        got = {k: renamed(v) if isinstance(v, str) else v for k, v in got.items() if k != "source_uri"}
        assert got == {k: v for k, v in want.items() if k != "source_uri"}

    (video_name,) = [n for n in local_files if n.startswith("videos/")]
    info = video.probe(str(remote_files[video_name]))
    assert (info.frame_count, info.width, info.height, info.codec) == (30, 512, 256, "h264")
    seg = video.plan_segments(info, info.frame_count)[0]
    assert sum(1 for _ in video.decode_frames(str(remote_files[video_name]), info, seg)) == 30


def test_a_failed_upload_leaves_no_partial_object(gcs):
    uri = gcs.uri("atomic", "frame.bin")
    storage.write_bytes(uri, b"previous")
    for size in (1 << 10, 20 << 20):  # buffered only, and past one 16 MiB resumable chunk
        with pytest.raises(RuntimeError), storage.open_for_write(uri) as f:
            f.write(b"x" * size)
            raise RuntimeError("the step failed midway")
        assert storage.read_bytes(uri) == b"previous"
    with pytest.raises(RuntimeError), storage.open_for_write(gcs.uri("atomic", "new.bin")) as f:
        f.write(b"partial")
        raise RuntimeError("the step failed midway")
    assert not storage.exists(gcs.uri("atomic", "new.bin"))


def test_remote_inputs_are_copied_once_per_version_and_evicted_when_old(gcs, input_cache, monkeypatch):
    first, second = gcs.uri("cache", "a.mp4"), gcs.uri("cache", "b.mp4")
    storage.write_bytes(first, b"version 1")
    path = storage.local_copy(first)
    inode = os.stat(path).st_ino
    assert storage.local_copy(first) == path and os.stat(path).st_ino == inode  # reused

    storage.write_bytes(first, b"version 2, longer")  # replaced at the same URI
    newer = storage.local_copy(first)
    assert newer != path and Path(newer).read_bytes() == b"version 2, longer"

    monkeypatch.setenv(storage.INPUT_CACHE_BYTES_ENV, "20")  # room for about one copy
    os.utime(path, (1, 1))  # unused for ages
    storage.write_bytes(second, b"another input")
    fresh = storage.local_copy(second)
    assert not os.path.exists(path)  # the stale, long-unused copy went
    assert os.path.exists(newer) and os.path.exists(fresh)  # recently used ones stay


def test_a_model_at_a_gs_uri_is_fetched_once_and_labels_like_the_local_file(gcs, monkeypatch):
    uri = gcs.upload(DEFAULT_TFLITE, gcs.uri("models", DEFAULT_TFLITE.name))
    downloads = []
    real_download = storage.download_file

    def counting_download(src, dst):
        downloads.append(src)
        real_download(src, dst)

    monkeypatch.setattr(storage, "download_file", counting_download)
    results = []
    threads = [threading.Thread(target=lambda: results.append(resolve(uri, "cityscapes")))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert downloads == [uri]  # four threads at once, one download
    resolved = results[0]
    assert {r.path for r in results} == {resolved.path}
    assert resolved.format == "tflite" and resolved.name == DEFAULT_TFLITE.name
    assert Path(resolved.path).read_bytes() == DEFAULT_TFLITE.read_bytes()
    before = os.stat(resolved.path)
    again = resolve(uri, "cityscapes")
    after = os.stat(again.path)
    assert again.path == resolved.path
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert downloads == [uri]

    rgb = decode_image(STILL.read_bytes())
    remote_labels = segment_frames(load_model(resolved, 1), [rgb])[0]
    local_labels = segment_frames(load_model(resolve("cityscapes-edgetpu-slim"), 1), [rgb])[0]
    np.testing.assert_array_equal(remote_labels, local_labels)


def test_a_saved_model_directory_at_a_gs_uri(gcs, tmp_path):
    local = build_saved_model(tmp_path)
    root = gcs.uri("models", "saved_ids")
    for path in local.rglob("*"):
        if path.is_file():
            storage.upload_file(str(path), f"{root}/{path.relative_to(local).as_posix()}")
    storage.write_bytes(f"{root}/variables/", b"")  # a "folder" object, as the GCS console makes

    resolved = resolve(root, "cityscapes")
    assert resolved.format == "savedmodel"
    assert sorted(p.relative_to(resolved.path).as_posix() for p in Path(resolved.path).rglob("*")
                  if p.is_file()) == sorted(p.relative_to(local).as_posix() for p in local.rglob("*")
                                            if p.is_file())
    assert resolve(root + "/", "cityscapes").path == resolved.path
    rgb = decode_image(STILL.read_bytes())
    labels = segment_frames(load_model(resolved), [rgb])[0]
    np.testing.assert_array_equal(labels, expected_labels(rgb))


def test_a_gs_model_mirror_is_verified_by_checksum_and_fetched_once(gcs, monkeypatch, tmp_path):
    mirror = gcs.uri("mirror")
    monkeypatch.setenv("BEAM_SEG_MODEL_DIR", mirror)
    monkeypatch.setenv("BEAM_SEG_CACHE_DIR", str(tmp_path / "cache"))
    good = DEFAULT_TFLITE.read_bytes()
    storage.write_bytes(f"{mirror}/{DEFAULT_TFLITE.name}", good[:-1])  # a truncated copy
    with pytest.raises(ModelNotFoundError, match="checksum mismatch"):
        resolve("cityscapes-edgetpu-slim")
    assert not (tmp_path / "cache" / DEFAULT_TFLITE.name).exists()

    storage.write_bytes(f"{mirror}/{DEFAULT_TFLITE.name}", good)
    first = resolve("cityscapes-edgetpu-slim")
    assert first.path == str(tmp_path / "cache" / DEFAULT_TFLITE.name)
    stat = os.stat(first.path)
    assert resolve("cityscapes-edgetpu-slim").path == first.path
    assert (os.stat(first.path).st_ino, os.stat(first.path).st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)


def test_the_out_of_domain_warning_and_the_comparison_read_runs_on_a_bucket(gcs, tmp_path):
    """The summary's and the report's reads of confidence and presets work on gs:// too."""
    import contextlib
    import io

    from beam_seg import cli
    from beam_seg.config import RunConfig
    from beam_seg.job.inputs import Plan
    from beam_seg.job.summary import out_of_domain
    from beam_seg.tables import domain

    from synthetic_run import write_still_run

    model = "cityscapes-edgetpu-slim"
    low = domain.CALIBRATIONS[model].threshold["fast"] - 0.1
    stills = [("/f/a.jpg", model, low), ("/f/b.jpg", model, 0.99)]
    write_still_run(tmp_path / "run", stills, quality="fast")
    out = gcs.uri("ood-run")
    for local in (tmp_path / "run").rglob("*"):
        if local.is_file():
            gcs.upload(local, f"{out}/{local.relative_to(tmp_path / 'run').as_posix()}")
    lines = out_of_domain(Plan(inputs=["/f/a.jpg", "/f/b.jpg"]), RunConfig(output=out, quality="fast"))
    assert lines and lines[0].startswith("1 of 2 inputs look unlike")
    assert domain.presets_from_markers(out, [naming.input_id("/f/a.jpg")]) == {
        naming.input_id("/f/a.jpg"): "fast"}
    with contextlib.redirect_stdout(io.StringIO()) as text:
        assert cli.main(["report", out, str(tmp_path / "run"), "--html", str(tmp_path / "c.html")]) == 0
    assert "2 inputs in both runs" in text.getvalue()
    assert f"A: 1 of 2 inputs look unlike the footage {model}" in text.getvalue()
