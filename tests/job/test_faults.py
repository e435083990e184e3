"""Data integrity under faults: one writer per output root, an interrupted --overwrite, a
replaced source, odd but valid videos, a full or read-only disk. After each fault a plain
re-run must end byte-identical to a clean run of the same command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from beam_seg import naming
from beam_seg.media.video import count_frames, ffmpeg_exe

from conftest import DATA, ROOT, make_index_video
from pipeline_helpers import assert_same_outputs, coverage, files_of, segment

pytestmark = pytest.mark.real_model  # the second tier: runs the real model

BEAM_SEG = [sys.executable, "-m", "beam_seg.cli", "segment"]
STILL = DATA / "images" / "dashcam" / "vehicle_test2.jpg"
FAST = ("--quality", "fast")


def start_cli(inputs: list, out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*BEAM_SEG, *map(str, inputs), "--output", str(out), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before the fault: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting for the run to make progress"
        time.sleep(0.05)


def kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.communicate()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line.lower()]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """60 frames, B-frames, a keyframe every 12: six 10-frame segments."""
    return make_index_video(tmp_path_factory.mktemp("clip") / "clip.mp4", 60, width=320, height=192)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """`clean_run(inputs, *args)`: the output root of an undisturbed run of that command,
    made once a module (read it, never change it; inputs must not change under a path):
    what every faulted run must end equal to."""
    made: dict[tuple, Path] = {}

    def clean(inputs: list, *args: str) -> Path:
        key = (tuple(map(str, inputs)), args)
        if key not in made:
            out = tmp_path_factory.mktemp("clean")
            assert segment(inputs, out, *args) == 0
            made[key] = out
        return made[key]

    return clean


@pytest.fixture(scope="module")
def tiny(tiny_model) -> tuple[str, ...]:
    """A tiny real model, one pass a frame, for the faults whose runs need not last: a kill
    comes within 50 ms of the first finished segment, with most of the clip still to go. A
    second writer, which takes seconds to start, races the real model instead."""
    return (*tiny_model, *FAST)


# --- one writer per output root -------------------------------------------------------

def test_two_runs_started_together_one_writes_the_other_refuses(clip, clean_run, tmp_path):
    reference = clean_run([clip, STILL], "--segment-frames", "10", *FAST)
    out = tmp_path / "out"
    runs = [start_cli([clip, STILL], out, "--segment-frames", "10", *FAST) for _ in range(2)]
    results = [(run.wait(timeout=600), *run.communicate()) for run in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], [(code, err[-2000:]) for code, _, err in results]
    (_, _, refused), = [r for r in results if r[0] == 2]
    assert "Traceback" not in refused
    (line,) = error_lines(refused)
    assert "another run is writing to" in line and "pid " in line, line
    assert not (out / "_lock.json").exists()  # released by the run that held it
    assert_same_outputs(out, reference)
    assert segment([clip, STILL], out, "--segment-frames", "10", *FAST) == 0  # a plain re-run
    assert_same_outputs(out, reference)


def test_a_run_started_while_another_writes_refuses_and_leaves_it_alone(clip, clean_run, tmp_path):
    reference = clean_run([clip], "--segment-frames", "10", *FAST)
    out = tmp_path / "out"
    first = start_cli([clip], out, "--segment-frames", "10", *FAST)
    work = out / "_work" / naming.input_id(str(clip))
    wait_for(lambda: any(work.glob("segment-*.json")), first)
    second = subprocess.run([*BEAM_SEG, str(clip), "--output", str(out), "--segment-frames", "50",
                             "--overwrite", *FAST], cwd=ROOT, capture_output=True, text=True)
    assert second.returncode == 2 and "another run is writing to" in second.stderr, second.stderr
    assert first.wait(timeout=600) == 0, first.communicate()
    assert_same_outputs(out, reference)  # the refused --overwrite touched nothing


def test_a_lock_left_by_a_dead_run_is_taken_over(clip, tiny, clean_run, tmp_path):
    """A run killed outright leaves its lock: the next run on this host sees its process is
    gone, takes the lock over with a warning, and resumes."""
    reference = clean_run([clip], "--segment-frames", "10", *tiny)
    out = tmp_path / "out"
    run = start_cli([clip], out, "--segment-frames", "10", *tiny)
    work = out / "_work" / naming.input_id(str(clip))
    wait_for(lambda: any(work.glob("segment-*.json")), run)
    kill(run)
    lock = json.loads((out / "_lock.json").read_text())
    assert lock["pid"] == run.pid
    again = subprocess.run([*BEAM_SEG, str(clip), "--output", str(out), "--segment-frames", "10",
                            *tiny], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"taking over the lock on {out} from pid {run.pid}" in again.stderr
    assert "is gone" in again.stderr
    assert_same_outputs(out, reference)


# --- a done marker only vouches for what is there -------------------------------------

def test_a_killed_overwrite_leaves_nothing_done_and_a_rerun_completes_it(clip, tiny, clean_run, tmp_path):
    """Run with 7-frame segments, then --overwrite with 20, killed after its first segment:
    the old done marker must be gone, so a plain re-run redoes the input (it used to skip
    it and keep a table with 73 rows for 60 frames)."""
    reference = clean_run([clip], "--segment-frames", "20", *tiny)
    out = tmp_path / "out"
    assert segment([clip], out, "--segment-frames", "7", *tiny) == 0
    iid = naming.input_id(str(clip))
    done = out / "_done" / f"{iid}.json"
    assert done.exists()
    run = start_cli([clip], out, "--segment-frames", "20", "--overwrite", *tiny)
    wait_for(lambda: any((out / "_work" / iid).glob("segment-*.json")), run)
    kill(run)
    assert not done.exists()
    assert segment([clip], out, "--segment-frames", "20", *tiny) == 0
    assert [r["frame_index"] for r in coverage(out)] == list(range(60))
    assert_same_outputs(out, reference)


def test_a_missing_segment_video_without_an_error_is_an_error(clip, tmp_path):
    """Another hand removed a finished segment's mp4 before the input was assembled: the
    input is not done (it used to be joined from the segments left, and marked done)."""
    from beam_seg.config import RunConfig
    from beam_seg.pipeline import finish
    from beam_seg.pipeline.decode import plan_units
    from beam_seg.pipeline.records import UnitStatus, UnitWritten

    cfg = RunConfig(output=str(tmp_path / "out"), segment_frames=30)
    units = plan_units(str(clip), cfg)
    layout = cfg.layout
    written = []
    for unit in units:
        uri = layout.segment_video(unit.input_id, unit.segment.index)
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, uri)
        written.append(UnitWritten(unit, unit.segment.count, uri))
    written[1] = UnitWritten(units[1], units[1].segment.count, None)  # its mp4 went missing
    state = finish.InputState(units[0].input_id, [UnitStatus(u, u.segment.count, u.segment.count)
                                                  for u in units], written)
    summary = finish.finish_input(state, cfg)
    assert summary["errors"] and "has no video and no error saying why" in summary["first_error"]
    assert not Path(layout.done_marker(units[0].input_id)).exists()


def test_a_video_or_table_that_does_not_match_the_plan_is_not_done(clip, tiny, clean_run, tmp_path):
    """The checks behind a done marker, fed a table with a frame twice and a video of the
    wrong length (what two writers into one OUT used to leave)."""
    from beam_seg.config import RunConfig
    from beam_seg.pipeline import finish
    from beam_seg.pipeline.decode import plan_units
    from beam_seg.pipeline.records import UnitStatus, UnitWritten

    out = tmp_path / "out"
    shutil.copytree(clean_run([clip], "--segment-frames", "30", *tiny), out)
    cfg = RunConfig(output=str(out), segment_frames=30, quality="fast")
    units = plan_units(str(clip), cfg)
    iid = units[0].input_id
    state = finish.InputState(iid, [UnitStatus(u, 30, 30) for u in units],
                              [UnitWritten(u, 30, None) for u in units])
    assert finish.check_coverage(state, cfg.layout, cfg.every_nth_frame) == []
    table = out / "coverage" / iid
    shutil.copy(table / "segment-00000.parquet", table / "segment-00007.parquet")
    (problem,) = finish.check_coverage(state, cfg.layout, cfg.every_nth_frame)
    assert "90 rows for 60 planned frames" in problem.reason
    short = tmp_path / "short.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(clip), "-frames:v", "10",
                    "-c", "copy", str(short)], check=True)
    assert count_frames(str(short)) == 10 != len(finish.input_frame_indices(units[0], cfg.every_nth_frame))


# --- resume knows its source ----------------------------------------------------------

def _same_size_other_clip(clip: Path, dest: Path) -> None:
    """Another 60-frame clip (the same frames, negated) padded to the size of `clip` with
    an mp4 'free' box, which players and ffmpeg skip."""
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(clip), "-vf", "negate",
                    "-c:v", "libx264", "-bf", "3", "-g", "12", "-crf", "10", str(dest)], check=True)
    pad = clip.stat().st_size - dest.stat().st_size
    if pad < 8:  # make room: pad the original first
        grow = 8 - pad + 64
        with clip.open("ab") as f:
            f.write(grow.to_bytes(4, "big") + b"free" + bytes(grow - 8))
        pad = clip.stat().st_size - dest.stat().st_size
    with dest.open("ab") as f:
        f.write(pad.to_bytes(4, "big") + b"free" + bytes(pad - 8))
    assert dest.stat().st_size == clip.stat().st_size


def test_segments_of_a_replaced_source_are_redone(clip, tiny, clean_run, tmp_path):
    source = tmp_path / "in" / "clip.mp4"
    source.parent.mkdir()
    shutil.copy(clip, source)
    other = tmp_path / "other.mp4"
    _same_size_other_clip(source, other)
    out = tmp_path / "out"
    run = start_cli([source], out, "--segment-frames", "10", *tiny)
    work = out / "_work" / naming.input_id(str(source))
    wait_for(lambda: len(list(work.glob("segment-*.json"))) >= 2, run)
    kill(run)
    os.replace(other, source)  # same path, same size, rate and length; other pixels

    reference = clean_run([source], "--segment-frames", "10", *tiny)
    result = subprocess.run([*BEAM_SEG, str(source), "--output", str(out), "--segment-frames",
                             "10", *tiny], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "video segments: their source changed" in result.stdout, result.stderr[-3000:]
    assert "kept from an unfinished earlier run" not in result.stdout
    assert_same_outputs(out, reference)


def test_a_finished_input_whose_source_changed_is_redone(clip, tiny, tmp_path):
    source = tmp_path / "clip.mp4"
    shutil.copy(clip, source)
    out, reference = tmp_path / "out", tmp_path / "reference"
    assert segment([source, STILL], out, "--segment-frames", "30", *tiny) == 0
    _same_size_other_clip(source, tmp_path / "other.mp4")
    os.replace(tmp_path / "other.mp4", source)
    assert segment([source, STILL], reference, "--segment-frames", "30", *tiny) == 0
    result = subprocess.run([*BEAM_SEG, str(source), str(STILL), "--output", str(out),
                             "--segment-frames", "30", *tiny], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "1 skipped as already done" in result.stdout  # the still
    assert "redone       1 finished inputs" in result.stdout
    assert_same_outputs(out, reference)


# --- per-stream metadata --------------------------------------------------------------

def test_two_stream_file_and_stream_copy_trim_complete_and_rerun_identically(clip, tiny, tmp_path):
    two, cut = tmp_path / "two.mp4", tmp_path / "cut.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(clip), "-display_rotation", "90",
                    "-i", str(clip), "-map", "0:v", "-map", "1:v", "-c", "copy", str(two)], check=True)
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-ss", "0.5", "-i", str(clip), "-c", "copy",
                    str(cut)], check=True)
    out = tmp_path / "out"
    assert segment([two, cut], out, "--segment-frames", "20", *tiny) == 0
    rows = coverage(out)
    by_input = {uri: [r for r in rows if r["source_uri"] == uri] for uri in (str(two), str(cut))}
    assert [r["frame_index"] for r in by_input[str(two)]] == list(range(60))
    assert {(r["width"], r["height"]) for r in by_input[str(two)]} == {(320, 192)}
    trimmed = len(by_input[str(cut)])
    assert 40 < trimmed < 60
    for source, frames in ((two, 60), (cut, trimmed)):
        assert count_frames(str(out / "videos" / f"{naming.input_id(str(source))}.mp4")) == frames
    before = files_of(out)
    assert segment([two, cut], out, "--segment-frames", "20", *tiny) == 0
    assert files_of(out) == before


# --- full and read-only disks ---------------------------------------------------------

@pytest.fixture()
def tmpfs(tmp_path):
    """A small tmpfs of our own (the tests run as root); skipped where mounting is refused."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'}); "
                    "the full-disk tests need root and mount rights")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _resize(mount: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)


def test_a_disk_that_fills_up_midway_fails_clearly_and_a_rerun_completes(
        clip, tiny, clean_run, tmp_path, tmpfs):
    reference = clean_run([clip, STILL], "--segment-frames", "10", *tiny)
    total = sum(len(b) for b in files_of(reference).values())
    out = tmpfs / "out"
    _resize(tmpfs, f"{total // 2 // 4096 * 4096}")
    result = subprocess.run([*BEAM_SEG, str(clip), str(STILL), "--output", str(out),
                             "--segment-frames", "10", *tiny], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode in (3, 4), result.stderr[-3000:]
    iid = naming.input_id(str(clip))
    assert not (out / "_done" / f"{iid}.json").exists()  # nothing vouches for a partial input
    if result.returncode == 4:  # not even the error records fitted: one line says so
        (line,) = [line for line in result.stderr.splitlines() if line.startswith("beam-seg: error:")]
        assert f"cannot write to {out}" in line and "No space left on device" in line, line
    else:
        assert "No space left on device" in (out / "errors" / f"{iid}.jsonl").read_text()
    _resize(tmpfs, "64m")
    assert segment([clip, STILL], out, "--segment-frames", "10", *tiny) == 0
    assert_same_outputs(out, reference)


def test_a_full_disk_before_the_run_is_one_line_and_exit_4(clip, tiny, tmpfs):
    filler = tmpfs / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)
    result = subprocess.run([*BEAM_SEG, str(clip), "--output", str(tmpfs / "out"), *tiny],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr)
    assert f"cannot write to {tmpfs / 'out'}" in line and "No space left on device" in line


def test_a_read_only_output_folder_becomes_error_records_and_a_rerun_completes(
        clip, tiny, clean_run, tmp_path, tmpfs):
    """Overlays go to a read-only mount: their writes fail with EROFS, the run records them
    and exits 3; once writable again a plain re-run ends as a clean run."""
    reference = clean_run([clip], "--segment-frames", "30", *tiny)
    out = tmp_path / "out"
    iid = naming.input_id(str(clip))
    overlays = out / "overlays" / iid
    overlays.mkdir(parents=True)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    subprocess.run(["mount", "--bind", str(tmpfs), str(overlays)], check=True)
    try:
        result = subprocess.run([*BEAM_SEG, str(clip), "--output", str(out), "--segment-frames", "30",
                                 *tiny], cwd=ROOT, capture_output=True, text=True, timeout=600)
    finally:
        subprocess.run(["umount", str(overlays)], check=True)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    records = [json.loads(line) for line in (out / "errors" / f"{iid}.jsonl").read_text().splitlines()]
    per_frame = [r for r in records if r["step"] == "write" and r["details"]]  # caught, not derived
    assert per_frame and all("Read-only file system" in r["reason"] for r in per_frame), records[:3]
    assert not (out / "_done" / f"{iid}.json").exists()
    assert segment([clip], out, "--segment-frames", "30", *tiny) == 0
    assert_same_outputs(out, reference)
