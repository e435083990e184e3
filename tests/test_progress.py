"""A run you can watch: live progress with stderr a pipe, and Ctrl-C (real model, second tier)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

from beam_seg.media.video import probe

from conftest import DATA, ROOT

pytestmark = pytest.mark.real_model

DEMO_CLIP = DATA / "videos" / "udacity_solidWhiteRight.mp4"
SMALL_CLIP = DATA / "videos" / "cityscapes_aachen_seq0001_512x256_17fps.mp4"


class TimedRun:
    """`beam-seg segment …` in a child process, every stderr line stamped as it arrives."""

    def __init__(self, *args: str):
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "beam_seg.cli", "segment", *args],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self.stdout: list[str] = []
        # one reader per pipe (communicate() would race the stderr reader for the last lines)
        self._readers = [threading.Thread(target=self._read_stderr, daemon=True),
                         threading.Thread(target=lambda: self.stdout.extend(self.proc.stdout), daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((time.monotonic() - self.started, line.rstrip("\n")))

    def wait(self, timeout: float) -> tuple[int, float, str]:
        self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return self.proc.returncode, time.monotonic() - self.started, "".join(self.stdout)

    def wait_for(self, prefix: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(line.startswith(prefix) for _, line in self.lines):
            assert time.monotonic() < deadline, f"no {prefix!r} line: {self.lines}"
            assert self.proc.poll() is None, f"ended early: {self.lines}"
            time.sleep(0.2)


@pytest.mark.parametrize("mode", ["multi_threading", "multi_processing"])
def test_progress_comes_early_and_often_with_stderr_a_pipe(tmp_path, mode):
    run = TimedRun(str(DEMO_CLIP), "--output", str(tmp_path / "out"), "--segment-frames", "30",
                   f"--direct_running_mode={mode}", "--direct_num_workers=2")
    code, wall_s, stdout = run.wait(timeout=600)
    assert code == 0, run.lines
    updates = [(t, line) for t, line in run.lines if line.startswith("progress: frames ")]
    assert len(updates) >= 3, run.lines
    assert updates[0][0] < 0.4 * wall_s, (updates[0], wall_s)
    assert updates[-1][1].startswith("progress: frames 221/221 (100%)")
    assert "ETA" in updates[0][1] and "frames/s" in updates[0][1]
    noise = [line for _, line in run.lines if "semi_persistent_directory" in line
             or "Discarding unparseable args" in line]
    assert not noise
    assert "inputs       1: 1 succeeded" in stdout


def test_ctrl_c_is_one_line_exit_130_and_a_rerun_resumes(tmp_path):
    out = tmp_path / "out"
    run = TimedRun(str(SMALL_CLIP), "--output", str(out), "--quality", "fast", "--segment-frames", "10")
    run.wait_for("progress: frames", timeout=300)
    run.proc.send_signal(signal.SIGINT)
    code, _, _ = run.wait(timeout=60)
    stderr = [line for _, line in run.lines]
    assert code == 130
    assert not any("Traceback" in line for line in stderr), stderr
    assert any(line.startswith("beam-seg: interrupted.") and "resume" in line for line in stderr)
    rerun = TimedRun(str(SMALL_CLIP), "--output", str(out), "--quality", "fast", "--segment-frames", "10")
    code, _, _ = rerun.wait(timeout=600)
    assert code == 0, rerun.lines
    (video,) = (out / "videos").glob("*.mp4")
    assert probe(str(video)).frame_count == 30
