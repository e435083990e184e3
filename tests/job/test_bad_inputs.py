"""Bad inputs, hostile names, resume and exit codes: a run always finishes and says what failed."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from beam_seg import naming
from beam_seg.media.video import ffmpeg_exe, plan_segments, probe

from conftest import DATA, ROOT, make_index_video
from pipeline_helpers import coverage, label_maps, segment

pytestmark = pytest.mark.real_model  # the second tier: runs the real model

BEAM_SEG = [sys.executable, "-m", "beam_seg.cli"]


def _outputs_of(out: Path, source: Path) -> dict[str, list[Path]]:
    iid = naming.input_id(str(source))
    return {
        "labels": sorted((out / "labels" / iid).glob("*.png")),
        "overlays": sorted((out / "overlays" / iid).glob("*.jpg")),
        "coverage": sorted((out / "coverage" / iid).glob("*.parquet")),
        "done": sorted((out / "_done").glob(f"{iid}.json")),
        "errors": sorted((out / "errors").glob(f"{iid}.jsonl")),
    }


def _errors(out: Path, source: Path) -> list[dict]:
    path = out / "errors" / f"{naming.input_id(str(source))}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def mixed_inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("mixed")
    inputs = {"zero": d / "zero.mp4", "text": d / "notes.jpg", "audio": d / "audio_only.mp4",
              "rgba": d / "rgba.png", "gray16": d / "gray16.png", "truncated": d / "truncated.mp4"}
    inputs["zero"].write_bytes(b"")
    inputs["text"].write_text("this is a text file, not a JPEG\n")
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=1",
                    "-c:a", "aac", str(inputs["audio"])], check=True)
    street = np.asarray(Image.open(DATA / "images" / "dashcam" / "vehicle_test3.jpg").convert("RGB"))
    rgba = np.dstack([street[:200, :300], np.full((200, 300), 90, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(inputs["rgba"])
    gray16 = (street[:200, :300, 1].astype(np.uint16) * 257)
    Image.fromarray(gray16).save(inputs["gray16"])
    assert Image.open(inputs["gray16"]).mode.startswith("I;16")
    full = make_index_video(d / "full.mp4", 40, width=320, height=192)
    # moov at the front (as cameras write it), then cut: the first frames stay decodable
    faststart = d / "faststart.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(full), "-c", "copy",
                    "-movflags", "+faststart", str(faststart)], check=True)
    data = faststart.read_bytes()
    inputs["truncated"].write_bytes(data[: len(data) * 6 // 10])
    return inputs


@pytest.fixture(scope="module")
def mixed_run(mixed_inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed-out")
    code = segment(list(mixed_inputs.values()), out, "--segment-frames", "10")
    return code, out


def test_bad_inputs_become_error_records_and_exit_3(mixed_inputs, mixed_run):
    code, out = mixed_run
    assert code == 3
    expected_reasons = {"zero": "empty", "text": "not a readable image", "audio": "no video stream"}
    for name, fragment in expected_reasons.items():
        (record,) = _errors(out, mixed_inputs[name])
        assert fragment in record["reason"], record
        assert record["source_uri"] == str(mixed_inputs[name]) and record["step"] in ("plan", "decode")
        assert not _outputs_of(out, mixed_inputs[name])["done"]


@pytest.mark.parametrize("name", ["rgba", "gray16"])
def test_unusual_image_modes_get_all_their_outputs(mixed_inputs, mixed_run, name):
    _, out = mixed_run
    outputs = _outputs_of(out, mixed_inputs[name])
    assert [len(outputs[k]) for k in ("labels", "overlays", "coverage", "done", "errors")] == [1, 1, 1, 1, 0]
    ids = label_maps(out)[f"labels/{naming.input_id(str(mixed_inputs[name]))}/000000.png"]
    assert ids.shape == (200, 300)
    assert len(np.unique(ids)) > 1  # a real street scene, not one flat class


def test_truncated_video_keeps_decoded_frames_and_reports_the_rest(mixed_inputs, mixed_run):
    _, out = mixed_run
    source = mixed_inputs["truncated"]
    outputs = _outputs_of(out, source)
    rows = [r for r in coverage(out) if r["source_uri"] == str(source)]
    assert 0 < len(rows) < 40
    assert [r["frame_index"] for r in rows] == list(range(len(rows)))
    assert len(outputs["labels"]) == len(rows)
    records = _errors(out, source)
    assert any(r["step"] == "decode" and r["frame_start"] == len(rows) for r in records), records
    # the cut segment's encoder never saw its planned last frame: it is closed at the end
    # of the bundle, so the video still holds every decoded frame
    assert probe(str(out / "videos" / f"{naming.input_id(str(source))}.mp4")).frame_count == len(rows)


def test_a_truncated_video_stays_failed_on_a_rerun_though_every_frame_it_wants_decoded(
        tiny_model, mixed_inputs, tmp_path):
    """With --every-nth-frame the frames a run wants may all come before the cut: the input
    still fails (its decoding stopped early), and a re-run decodes it again and fails the
    same way, rather than reusing the segment as a clean one and calling the input done."""
    source = mixed_inputs["truncated"]
    out = tmp_path / "out"
    for _ in range(2):
        assert segment([source], out, *tiny_model, "--every-nth-frame", "50") == 3
        assert [r["step"] for r in _errors(out, source)] == ["decode"]
        assert _outputs_of(out, source)["done"] == []
        assert [r["frame_index"] for r in coverage(out)] == [0]


def test_an_unwritable_segment_video_is_an_error_record_and_nothing_else_is_lost(tiny_model, tmp_path):
    clip = make_index_video(tmp_path / "clip.mp4", 12)
    out = tmp_path / "out"
    blocker = out / "_work" / naming.input_id(str(clip))  # a file where segment videos go
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")
    assert segment([clip], out, *tiny_model, "--segment-frames", "5") == 3
    records = _errors(out, clip)
    assert [(r["step"], r["frame_start"]) for r in records] == [("encode", 0), ("encode", 5), ("encode", 10)]
    assert all("segment video" in r["reason"] for r in records)
    outputs = _outputs_of(out, clip)
    assert [len(outputs[k]) for k in ("labels", "overlays", "coverage", "done")] == [12, 12, 3, 0]
    assert len(coverage(out)) == 12

    blocker.unlink()  # once the cause is gone, a re-run finishes the input
    assert segment([clip], out, *tiny_model, "--segment-frames", "5") == 0
    assert probe(str(out / "videos" / f"{naming.input_id(str(clip))}.mp4")).frame_count == 12


def test_rerun_skips_finished_inputs_and_overwrite_redoes_them(tiny_model, tmp_path):
    inputs = [DATA / "images" / "dashcam" / "lanes_solidYellowLeft.jpg",
              make_index_video(tmp_path / "clip.mp4", 12)]
    out = tmp_path / "out"
    assert segment(inputs, out, *tiny_model, "--segment-frames", "5") == 0
    files = sorted(p for p in out.rglob("*") if p.is_file())
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}

    assert segment(inputs, out, *tiny_model, "--segment-frames", "5") == 0
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before

    assert segment(inputs, out, *tiny_model, "--segment-frames", "5", "--overwrite") == 0
    for path, (mtime, data) in before.items():
        assert path.stat().st_mtime_ns != mtime, f"{path} was not rewritten"
        assert path.read_bytes() == data, f"{path} differs on a re-run"  # byte-for-byte deterministic


def test_a_killed_run_resumes_to_complete_correct_outputs(tmp_path):
    """A run killed mid-video keeps the segments it finished: the re-run leaves their files
    alone, does the rest, and ends with the outputs of an uninterrupted run."""
    clip = make_index_video(tmp_path / "long clip.mp4", 60, width=320, height=192)
    image = DATA / "images" / "dashcam" / "vehicle_test2.jpg"
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert segment([clip, image], reference, "--segment-frames", "10") == 0

    args = [*BEAM_SEG, "segment", str(clip), str(image), "--output", str(resumed), "--segment-frames", "10"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    iid = naming.input_id(str(clip))
    work = resumed / "_work" / iid
    try:
        _wait_for(lambda: any(work.glob("segment-*.json")), proc)
    finally:
        proc.kill()
        proc.wait()
    assert not (resumed / "_done" / f"{iid}.json").exists()
    finished = [int(p.stem.split("-")[1]) for p in work.glob("segment-*.json")]
    kept = [resumed / "coverage" / iid / f"segment-{n:05d}.parquet" for n in finished]
    kept += [resumed / "labels" / iid / f"{frame:06d}.png"
             for n in finished for frame in range(10 * n, 10 * n + 10)]
    before = {path: path.stat().st_mtime_ns for path in kept}

    assert segment([clip, image], resumed, "--segment-frames", "10") == 0
    assert {path: path.stat().st_mtime_ns for path in kept} == before  # not redone
    assert label_maps(resumed).keys() == label_maps(reference).keys()
    for name, ids in label_maps(reference).items():
        np.testing.assert_array_equal(label_maps(resumed)[name], ids, err_msg=name)
    assert coverage(resumed) == coverage(reference)
    assert probe(str(resumed / "videos" / f"{iid}.mp4")).frame_count == 60
    assert not work.exists()  # segment videos and markers go once the input is done


def test_a_segment_is_reused_only_when_its_options_cut_and_files_match(tmp_path):
    from beam_seg.config import RunConfig
    from beam_seg.pipeline.markers import resume_segment, write_segment_marker
    from beam_seg.pipeline.records import WorkUnit

    clip = make_index_video(tmp_path / "clip.mp4", 12)
    info = probe(str(clip))
    cfg = RunConfig(output=str(tmp_path / "out"), model="m")
    layout = cfg.layout
    unit = WorkUnit(str(clip), "clip", "video", plan_segments(info, 5)[1], 3, info)
    write_segment_marker(unit, 5, layout, cfg.fingerprint)
    assert resume_segment(unit, layout, cfg.fingerprint) is None  # no segment video or coverage file yet
    for uri in (layout.segment_video("clip", 1), layout.coverage("clip", 1)):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        Path(uri).write_bytes(b"x")
    result = resume_segment(unit, layout, cfg.fingerprint)
    assert result is not None
    assert (result.frames, result.segment_video) == (5, layout.segment_video("clip", 1))
    other_options = dataclasses.replace(cfg, alpha=0.7).fingerprint
    assert resume_segment(unit, layout, other_options) is None
    replaced = dataclasses.replace(unit, source_version='{"mtime_ns": 1, "size": 2}')
    assert resume_segment(replaced, layout, cfg.fingerprint) is None  # another version of the source
    recut = WorkUnit(str(clip), "clip", "video", plan_segments(info, 4)[1], 3, info)  # frames 4-7
    assert resume_segment(recut, layout, cfg.fingerprint) is None


def _wait_for(condition, proc, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the run finished before it could be interrupted"
        assert time.monotonic() < deadline, "timed out waiting for the run to make progress"
        time.sleep(0.05)


def test_hostile_names_stay_under_the_output_root(tiny_model, tmp_path):
    weird = tmp_path / "in put #1 %20" / "ça va 'quoted' $HOME"
    other = tmp_path / "other"
    weird.mkdir(parents=True)
    other.mkdir()
    sources = [make_index_video(weird / "clip.mp4", 6), make_index_video(other / "clip.mp4", 6),
               make_index_video(weird / "..clip..mp4", 6)]
    image = weird / "naïve; rm -rf ~.png"
    Image.open(DATA / "images" / "dashcam" / "vehicle_test1.jpg").save(image)
    out = tmp_path / "out"
    assert segment([*sources, image], out, *tiny_model, "--quality", "fast") == 0
    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert len(videos) == 3 and len(set(videos)) == 3  # two clip.mp4 never collide
    for path in out.rglob("*"):
        assert out in path.resolve().parents
        assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in path.name), path
    assert len(coverage(out)) == 6 * 3 + 1


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    return subprocess.run([*BEAM_SEG, *args], cwd=cwd, capture_output=True, text=True, env=env)


@pytest.mark.parametrize("args,fragment", [
    (["segment", "/no/such/video.mp4", "--output", "OUT"], "input not found"),
    (["segment", "/no/such/dir/*.mp4", "--output", "OUT"], "no files match"),
    (["segment", "IMG", "--output", "OUT", "--model", "nonexistent-model"], "unknown model"),
    (["segment", "IMG", "--output", "BLOCKED/out"], "is a file, not a folder"),
    (["segment", "IMG", "--output", "OUT", "--alpha", "2"], "--alpha"),
    (["segment", "IMG", "--output", "OUT", "--every-nth-frame", "0"], "--every-nth-frame"),
    (["segment", "IMG"], "--output"),
    (["segment", "IMG", "--output", "OUT", "--alpha", "abc"], "'abc' is not a number: must be between"),
    (["segment", "IMG", "--output", "OUT", "--tile-scale", "inf"], "must be a positive number, not 'inf'"),
    (["segment", "IMG", "--output", "OUT", "--labels", "BLOCKED"], "holds no class names"),
    (["segment", "IMG", "--output", "OUT", "--labels", "IMG"], "is not UTF-8 text"),
    (["frobnicate"], "unknown command"),
])
def test_bad_usage_exits_2_with_one_line_and_no_traceback(tmp_path, args, fragment):
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # not a directory, and no class names
    image = str(DATA / "images" / "dashcam" / "vehicle_test1.jpg")
    args = [a.replace("OUT", str(tmp_path / "out")).replace("BLOCKED", str(blocked))
            .replace("IMG", image) for a in args]
    result = _cli(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "usage:" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and fragment in errors[0], result.stderr


def test_models_command_lists_the_registry():
    result = _cli("models")
    assert result.returncode == 0
    assert "cityscapes-edgetpu-slim" in result.stdout and "322fe29945cb" in result.stdout


def test_decompression_bombs_are_refused_before_decoding(tmp_path):
    """A 40000x40000 PNG is a few hundred kB on disk and 4.8 GB decoded: refused from its header."""
    import zlib

    bomb = tmp_path / "bomb.png"
    width = height = 40000
    raw_row = b"\x00" + b"\x00" * width
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(raw_row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))
    small = DATA / "images" / "dashcam" / "vehicle_test1.jpg"  # 1280x720 = 921,600 pixels
    out = tmp_path / "out"
    assert segment([bomb, small], out, "--max-image-pixels", "900000") == 3
    for source in (bomb, small):
        (record,) = _errors(out, source)
        assert record["step"] == "decode" and "ImageTooLargeError" in record["reason"], record
        # one limit named, the user's (Pillow's own, past which it refuses from the header, is not)
        assert "over the limit of 900000 (raise it with --max-image-pixels)" in record["reason"], record
    assert "image is 1600000000 pixels, over" in _errors(out, bomb)[0]["reason"]


def test_overwrite_with_other_segments_leaves_no_stale_rows_or_markers(tiny_model, tmp_path):
    clip = make_index_video(tmp_path / "clip.mp4", 12)
    out = tmp_path / "out"
    assert segment([clip], out, *tiny_model, "--segment-frames", "3") == 0
    assert segment([clip], out, *tiny_model, "--segment-frames", "5", "--overwrite") == 0
    assert [r["frame_index"] for r in coverage(out)] == list(range(12))  # no frame twice
    clip.write_bytes(b"")  # the same input, now broken, redone: it is no longer 'done'
    assert segment([clip], out, *tiny_model, "--overwrite") == 3
    assert not (out / "_done" / f"{naming.input_id(str(clip))}.json").exists()


def test_names_with_glob_characters_and_file_uris(tiny_model, tmp_path):
    clip = make_index_video(tmp_path / "clip [1080p].mp4", 4)
    out = tmp_path / "out"
    assert segment([clip], f"file://{out}", *tiny_model) == 0
    assert len(coverage(out)) == 4


def test_video_frames_over_the_pixel_limit_are_refused(tmp_path):
    clip = make_index_video(tmp_path / "clip.mp4", 4, width=160, height=96)
    out = tmp_path / "out"
    assert segment([clip], out, "--max-image-pixels", "10000") == 3
    (record,) = _errors(out, clip)
    assert record["step"] == "plan" and "over the limit" in record["reason"]


def test_beam_example_style_module_entry_point(tmp_path):
    """`python -m pipelines.segment` runs with save_main_session=True, as Beam's examples do."""
    image = DATA / "images" / "dashcam" / "vehicle_test1.jpg"
    result = subprocess.run([sys.executable, "-m", "pipelines.segment", str(image), "--output",
                             str(tmp_path / "out"), "--quality", "fast"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "== beam-seg summary ==" in result.stdout
    assert len(coverage(tmp_path / "out")) == 1
