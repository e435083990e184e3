"""A run you can watch: live progress with stderr a pipe, and Ctrl-C (real model, second tier)."""

from __future__ import annotations

import signal

import pytest

from beam_seg.media.video import probe

from cli_runs import TimedRun
from conftest import DATA

pytestmark = pytest.mark.real_model

SMALL_CLIP = DATA / "videos" / "cityscapes_aachen_seq0001_512x256_17fps.mp4"


@pytest.mark.serial  # times its runs: alone, after the rest
@pytest.mark.parametrize("run_name", ["demo_run", "demo_run_processes"])
def test_progress_comes_early_and_often_with_stderr_a_pipe(request, run_name):
    """Both DirectRunner modes (threads; worker processes), stderr a pipe."""
    run = request.getfixturevalue(run_name)
    assert run.code == 0, run.lines
    planned = 222 if run_name == "demo_run" else 56  # a still and 221 frames; every 4th frame
    updates = [(t, line) for t, line in run.lines if line.startswith("progress: frames ")]
    assert len(updates) >= 3, run.lines
    assert updates[0][0] < 0.4 * run.wall_s, (updates[0], run.wall_s)
    assert updates[-1][1].startswith(f"progress: frames {planned}/{planned} (100%)")
    assert "ETA" in updates[0][1] and "frames/s" in updates[0][1]
    noise = [line for _, line in run.lines if "semi_persistent_directory" in line
             or "Discarding unparseable args" in line]
    assert not noise
    inputs = 2 if run_name == "demo_run" else 1
    assert f"inputs       {inputs}: {inputs} succeeded" in run.stdout


def test_ctrl_c_is_one_line_exit_130_and_a_rerun_resumes(tmp_path):
    out = tmp_path / "out"
    run = TimedRun(str(SMALL_CLIP), "--output", str(out), "--quality", "fast", "--segment-frames", "10")
    run.wait_for("progress: frames", timeout=300)
    run.proc.send_signal(signal.SIGINT)
    code, _, _ = run.wait(timeout=60)
    stderr = [line for _, line in run.lines]
    assert code == 130
    assert not any("Traceback" in line for line in stderr), stderr
    assert any(line.startswith("beam-seg: interrupted by SIGINT: ") and "resume" in line for line in stderr)
    rerun = TimedRun(str(SMALL_CLIP), "--output", str(out), "--quality", "fast", "--segment-frames", "10")
    code, _, _ = rerun.wait(timeout=600)
    assert code == 0, rerun.lines
    (video,) = (out / "videos").glob("*.mp4")
    assert probe(str(video)).frame_count == 30
