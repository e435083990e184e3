"""Video as parallel frame-range segments: exact frames, exact reassembly, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from beam_seg import naming
from beam_seg.media import video
from beam_seg.media.video import ffmpeg_exe

from conftest import DATA, ROOT, decode_all, make_index_video, read_index
from pipeline_helpers import coverage, label_maps, segment

pytestmark = pytest.mark.real_model  # the second tier: runs the real model


@pytest.mark.parametrize("vfr", [False, True], ids=["cfr", "vfr"])
def test_output_frame_i_is_source_frame_i(tiny_model, tmp_path, vfr):
    source = make_index_video(tmp_path / "numbered.mp4", 47, fps="30000/1001", vfr=vfr)
    out = tmp_path / "out"
    # alpha 0 and no legend: the video's frames are the decoded frames themselves, whatever
    # the (tiny) model says
    assert segment([source], out, *tiny_model, "--segment-frames", "7", "--alpha", "0",
                   "--overlay-format", "png", "--legend", "none") == 0
    iid = naming.input_id(str(source))
    result = out / "videos" / f"{iid}.mp4"
    assert [read_index(f) for f in decode_all(result)] == list(range(47))
    info, source_info = video.probe(str(result)), video.probe(str(source))
    assert info.frame_count == 47
    if not vfr:
        assert info.fps == Fraction(30000, 1001)
    else:  # a variable-rate source comes out at its average rate: same duration, audio in sync
        assert info.duration_s == pytest.approx(source_info.duration_s, abs=0.05)
    rows = coverage(out)
    assert [r["frame_index"] for r in rows] == list(range(47))
    assert [r["timestamp_s"] for r in rows] == pytest.approx(list(source_info.timestamps_s))
    overlays = sorted((out / "overlays" / iid).glob("*.png"))
    from PIL import Image
    assert [read_index(np.asarray(Image.open(p))) for p in overlays] == list(range(47))


def test_video_frame_labels_equal_the_frame_run_as_an_image(tmp_path):
    clip = DATA / "videos" / "cityscapes_aachen_seq0001_512x256_17fps.mp4"
    still = tmp_path / "frame19.png"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(clip), "-vf", r"select=eq(n\,19)",
                    "-frames:v", "1", str(still)], check=True)
    out = tmp_path / "out"
    # with --temporal 0 (as `fast` has it) a video frame is segmented alone, exactly as a still
    assert segment([clip, still], out, "--segment-frames", "6", "--quality", "balanced",
                   "--temporal", "0") == 0
    maps = label_maps(out)
    from_video = maps[f"labels/{naming.input_id(str(clip))}/000019.png"]
    from_image = maps[f"labels/{naming.input_id(str(still))}/000000.png"]
    np.testing.assert_array_equal(from_video, from_image)


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent (pytest, with
# TensorFlow loaded) across fork+exec, while VmHWM belongs to the new process image.
PEAK_RSS = """
import json, re, sys
from pipelines.segment import run
code = run(sys.argv[1:], save_main_session=False)
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"code": code, "peak_rss_kb": hwm}))
"""


def _peak_rss_kb(args: list[str]) -> int:
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, *args], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, result.stderr
    return report["peak_rss_kb"]


def test_peak_memory_does_not_grow_with_video_length(tmp_path, tiny_model):
    """The same run on 60 and 600 frames of 640x360: peak RSS within 1.25x."""
    short = make_index_video(tmp_path / "short.mp4", 60, width=640, height=360)
    long = make_index_video(tmp_path / "long.mp4", 600, width=640, height=360)
    common = [*tiny_model, "--segment-frames", "30"]
    short_kb = _peak_rss_kb([str(short), "--output", str(tmp_path / "a"), *common])
    long_kb = _peak_rss_kb([str(long), "--output", str(tmp_path / "b"), *common])
    print(f"peak RSS: short {short_kb / 1024:.0f} MiB, long {long_kb / 1024:.0f} MiB, "
          f"ratio {long_kb / short_kb:.3f}")
    assert long_kb <= 1.25 * short_kb


def _layout(monkeypatch, cores: int, *args: str, threads=None, interpreters=None):
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_seg.job.runner import choose_layout, tune_direct_runner

    monkeypatch.setattr("os.cpu_count", lambda: cores)
    options = PipelineOptions(list(args))
    tune_direct_runner(options, list(args))
    return choose_layout(options, threads, interpreters)


def test_each_bundle_thread_gets_its_own_interpreter_and_cores_are_not_oversubscribed(monkeypatch):
    default = _layout(monkeypatch, 8)
    assert (default.interpreters, default.threads) == (8, 1)  # one per DirectRunner thread
    fewer = _layout(monkeypatch, 8, threads=4)
    assert (fewer.interpreters, fewer.threads) == (2, 4)
    processes = _layout(monkeypatch, 8, "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    assert (processes.interpreters, processes.threads) == (1, 4)
    in_memory = _layout(monkeypatch, 8, "--direct_running_mode=in_memory")
    assert (in_memory.interpreters, in_memory.threads) == (1, 8)
    dataflow = _layout(monkeypatch, 8, "--runner=DataflowRunner")
    assert (dataflow.interpreters, dataflow.threads) == (1, 1)  # one SDK process per vCPU
    chosen = _layout(monkeypatch, 8, interpreters=3, threads=2)
    assert (chosen.interpreters, chosen.threads) == (3, 2)
