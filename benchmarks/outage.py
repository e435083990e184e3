"""Seconds from stopping a GCS emulator mid-run to (a) the run's "cannot reach" line and
(b) its exit, per --storage-deadline: the figures in docs/integrity.md.

    python benchmarks/outage.py 5 15     # three runs per deadline, medians
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from beam_seg import storage  # noqa: E402

import gcs_emulator  # noqa: E402
from conftest import make_index_video  # noqa: E402


def once(deadline: str, scratch: Path) -> tuple[float, float | None, int]:
    clip = make_index_video(scratch / "clip.mp4", 60, width=320, height=192)
    with gcs_emulator.restartable(scratch / "gcs") as server:
        source = server.emulator.upload(clip, server.emulator.uri("in", "clip.mp4"))
        out = server.emulator.uri("out")
        run = subprocess.Popen([sys.executable, "-m", "beam_seg.cli", "segment", source, "--output", out,
                                "--quality", "fast", "--segment-frames", "10",
                                "--storage-deadline", deadline],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while not storage.list_files(out + "/_work/**.json"):
            if run.poll() is not None:
                raise SystemExit(run.stderr.read()[-3000:])
            time.sleep(0.2)
        server.stop()
        stopped = time.monotonic()
        said = None
        for line in run.stderr:
            if said is None and "cannot reach" in line:
                said = time.monotonic() - stopped
        run.wait()
        return time.monotonic() - stopped, said, run.returncode


def main(deadlines: list[str]) -> None:
    for deadline in deadlines:
        runs = []
        for _ in range(3):
            scratch = Path(tempfile.mkdtemp(prefix="beam_seg_outage_"))
            try:
                runs.append(once(deadline, scratch))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        print(f"--storage-deadline {deadline}: exit after "
              f"{statistics.median(r[0] for r in runs):.1f} s (runs {[round(r[0], 1) for r in runs]}), "
              f"'cannot reach' after {statistics.median(r[1] or 0 for r in runs):.1f} s, "
              f"exit codes {[r[2] for r in runs]}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["5", "15"])
