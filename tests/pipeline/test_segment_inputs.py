"""Fast tier: each branch of the composite `SegmentInputs` on Beam's TestPipeline.

Only the model is a stand-in (tests/fakes.py); decoding, the writes, the grouping by input
and the finish step are the real ones. One mixed run feeds a failure into each step (plan,
decode, inference, write) beside inputs that must still finish; a re-run over a copy of its
output checks resume; a run with temporal fusion checks that fused videos come out whole.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to
from fakes import FailingHandler, FakeHandler, FakeScoresHandler
from PIL import Image

from beam_seg import naming
from beam_seg.config import RunConfig
from beam_seg.media import video
from beam_seg.media.video import ffmpeg_exe
from beam_seg.pipeline.transforms import SegmentInputs

from conftest import decode_all, index_frame, make_index_video, read_index

SEGMENT = 4  # frames per work unit: the 10-frame videos below have 3 units (0-3, 4-7, 8-9)
FRAMES = 10
POISONED = 5  # the frame of poisoned.mp4 the failing model raises on (in the middle unit)


def _encode(path: Path, frames: list[np.ndarray], *extra: str) -> Path:
    height, width = frames[0].shape[:2]
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
            "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", "25", "-i", "-",
            "-c:v", "libx264", "-g", "12", "-pix_fmt", "yuv420p", "-crf", "10", *extra, str(path)]
    subprocess.run(args, input=b"".join(f.tobytes() for f in frames), check=True)
    return path


def _truncated(directory: Path) -> Path:
    """A video cut in half with its index at the front (as cameras write it): the probe
    counts more frames than the decoder then gives. Noise frames, so that the frames, not
    the index, make up most of the file."""
    noise = np.random.default_rng(0).integers(0, 256, (12, 96, 160, 3), dtype=np.uint8)
    full = _encode(directory / "full.mp4", list(noise), "-movflags", "+faststart")
    data = full.read_bytes()
    path = directory / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    return path


STRIP = 12  # rows at the bottom of a panning scene that show the frame's index


def _panning_scene(frames: int, width: int = 160, height: int = 96) -> list[np.ndarray]:
    """A smooth pattern panning 2 pixels a frame (no frame looks like a scene cut, so fusion
    merges every frame with its neighbours), each frame's index in bars along the bottom."""
    y = np.arange(height - STRIP)[:, None]
    out = []
    for i in range(frames):
        x = np.arange(width)[None, :] + 2 * i
        v = (128 + 100 * np.sin(2 * np.pi * x / 40) * np.cos(2 * np.pi * y / 50)).astype(np.uint8)
        out.append(np.vstack([np.dstack([v, v // 2, 255 - v]), index_frame(i, width, STRIP)]))
    return out


def _handler(cls, cfg: RunConfig):
    return cls(cfg.model, cfg.labels, 1, cfg.inference_settings(), interpreters=1,
               temporal=cfg.temporal_frames())


def _summaries_are(expected: dict[str, tuple]):
    """A matcher: one summary per input, by file name, with (frames, failed); frames may be
    a predicate when only a range is known."""
    def check(actual):
        got = {os.path.basename(s["source_uri"]): s for s in actual}
        if sorted(got) != sorted(expected) or len(actual) != len(expected):
            raise BeamAssertException(f"summaries for {sorted(got)}, expected {sorted(expected)}")
        for name, (frames, failed) in expected.items():
            summary = got[name]
            ok = frames(summary["frames"]) if callable(frames) else summary["frames"] == frames
            if not ok or (summary["errors"] > 0) != failed:
                raise BeamAssertException(f"{name}: {summary}")
    return check


def _iid(path: Path) -> str:
    return naming.input_id(str(path))


def _errors(cfg: RunConfig, source: Path) -> list[dict]:
    path = Path(cfg.output, "errors", _iid(source) + ".jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _labelled_frames(cfg: RunConfig, source: Path) -> list[int]:
    folder = Path(cfg.layout.label_png(_iid(source), 0)).parent
    return sorted(int(p.stem) for p in folder.glob("*.png")) if folder.is_dir() else []


def _done(cfg: RunConfig, source: Path) -> dict | None:
    marker = Path(cfg.layout.done_marker(_iid(source)))
    return json.loads(marker.read_text()) if marker.exists() else None


def _video_indices(cfg: RunConfig, source: Path, rows: int | None = None) -> list[int]:
    """The frame index each frame of the input's segmented video shows (in its bottom
    `rows`, when given), in its order."""
    frames = decode_all(Path(cfg.layout.video(_iid(source))))
    return [read_index(frame[-rows:] if rows else frame) for frame in frames]


def _counter(result, name: str) -> int:
    """A counter of a finished run, as the run summary reads it."""
    return sum(c.committed for c in result.metrics().query(MetricsFilter().with_name(name))["counters"])


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """One run over inputs that each fail at a different step, beside two that must finish."""
    src = tmp_path_factory.mktemp("inputs")
    still = src / "still.png"
    Image.fromarray(np.full((48, 80, 3), (100, 30, 60), np.uint8)).save(still)
    unwritable = src / "unwritable.png"
    Image.fromarray(np.full((48, 80, 3), (200, 30, 60), np.uint8)).save(unwritable)
    (src / "notes.txt").write_text("not a picture and not a video")
    (src / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    (src / "text.jpg").write_text("this is a text file, not a JPEG\n")
    frames = [index_frame(i) for i in range(FRAMES)]
    frames[POISONED] = np.dstack([np.zeros((96, 160, 2), np.uint8), np.full((96, 160), 255, np.uint8)])
    inputs = {"still": still, "clip": make_index_video(src / "clip.mp4", FRAMES),
              "notes": src / "notes.txt", "garbage": src / "garbage.mp4", "text": src / "text.jpg",
              "truncated": _truncated(src), "poisoned": _encode(src / "poisoned.mp4", frames),
              "unwritable": unwritable}
    cfg = RunConfig(output=str(tmp_path_factory.mktemp("out")), quality="fast", segment_frames=SEGMENT,
                    legend="none")  # the legend would cover the frame-index bars
    # a file where the still's label maps go: its first write fails
    blocker = Path(cfg.layout.label_png(_iid(unwritable), 0)).parent
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")
    with TestPipeline() as p:
        summaries = (p | beam.Create([str(path) for path in inputs.values()])
                     | SegmentInputs(cfg, _handler(FailingHandler, cfg)))
        assert_that(summaries, _summaries_are({
            "still.png": (1, False), "clip.mp4": (FRAMES, False), "notes.txt": (0, True),
            "garbage.mp4": (0, True), "text.jpg": (0, True),
            "truncated.mp4": (lambda n: 0 < n < 12, True), "poisoned.mp4": (FRAMES - 1, True),
            "unwritable.png": (0, True)}))
    return inputs, cfg


def test_finish_marks_done_only_complete_inputs_and_records_the_others_errors(mixed):
    inputs, cfg = mixed
    for name, source in inputs.items():
        complete = name in ("still", "clip")
        assert (_done(cfg, source) is not None) == complete, name
        assert bool(_errors(cfg, source)) != complete, name
    marker = _done(cfg, inputs["clip"])
    assert (marker["frames"], marker["errors"], marker["fingerprint"]) == (FRAMES, 0, cfg.fingerprint)
    # the clip's three segments are joined in order into one video, and their parts removed
    assert _video_indices(cfg, inputs["clip"]) == list(range(FRAMES))
    assert not os.path.exists(cfg.layout.segment_video_dir(_iid(inputs["clip"])))
    assert _labelled_frames(cfg, inputs["clip"]) == list(range(FRAMES))
    assert _labelled_frames(cfg, inputs["still"]) == [0]
    # a failed video keeps its segment parts for a re-run to resume from
    assert os.path.isdir(cfg.layout.segment_video_dir(_iid(inputs["poisoned"])))


@pytest.mark.parametrize("name, fragment", [("notes", "unsupported file type"),
                                                ("garbage", "not a readable media file")])
def test_an_input_that_cannot_be_planned_is_a_plan_error(mixed, name, fragment):
    inputs, cfg = mixed
    (record,) = _errors(cfg, inputs[name])
    assert record["step"] == "plan" and fragment in record["reason"], record
    assert record["source_uri"] == str(inputs[name])
    assert _labelled_frames(cfg, inputs[name]) == []


def test_an_unreadable_image_is_a_decode_error(mixed):
    inputs, cfg = mixed
    (record,) = _errors(cfg, inputs["text"])
    assert record["step"] == "decode" and "not a readable image" in record["reason"], record
    assert _labelled_frames(cfg, inputs["text"]) == []


def test_a_truncated_video_keeps_its_decoded_frames_and_reports_the_rest(mixed):
    inputs, cfg = mixed
    kept = _labelled_frames(cfg, inputs["truncated"])
    assert kept == list(range(len(kept))) and 0 < len(kept) < 12
    records = _errors(cfg, inputs["truncated"])
    assert any(r["step"] == "decode" and r["frame_start"] == len(kept) for r in records), records


def test_a_frame_the_model_fails_on_is_an_inference_error_and_the_others_are_written(mixed):
    inputs, cfg = mixed
    records = _errors(cfg, inputs["poisoned"])
    failed = [r for r in records if r["step"] == "inference"]
    assert [(r["frame_start"], r["frame_stop"]) for r in failed] == [(POISONED, POISONED + 1)], records
    assert "cannot read this frame" in failed[0]["reason"]
    assert _labelled_frames(cfg, inputs["poisoned"]) == [i for i in range(FRAMES) if i != POISONED]


def test_a_write_that_fails_is_a_write_error(mixed):
    inputs, cfg = mixed
    records = _errors(cfg, inputs["unwritable"])
    # the failed write's own record: the exception, naming the path it could not write
    blocked = os.path.join("labels", _iid(inputs["unwritable"]))
    assert any(r["step"] == "write" and blocked in r["reason"] and r["details"] for r in records), records
    assert not list(Path(cfg.output, "coverage").glob(_iid(inputs["unwritable"]) + "/*"))


def test_a_rerun_resumes_finished_segments_without_decoding_them_again(mixed, tmp_path):
    """The mixed run finished segments 0 and 2 of poisoned.mp4, not segment 1 (frame 5
    failed). A re-run with a model that no longer fails redoes only segment 1: the label
    maps of the others, deleted here, stay deleted, yet the input is complete, and the
    run's figures (what its summary prints) count 2 segments kept and 4 frames decoded."""
    inputs, first = mixed
    cfg = RunConfig(output=str(tmp_path / "out"), quality="fast", segment_frames=SEGMENT,
                    legend="none")  # the legend would cover the frame-index bars
    shutil.copytree(first.output, cfg.output)
    source = inputs["poisoned"]
    resumed = [i for i in range(FRAMES) if not SEGMENT <= i < 2 * SEGMENT]
    for index in resumed:
        os.remove(cfg.layout.label_png(_iid(source), index))
    with TestPipeline() as p:
        summaries = p | beam.Create([str(source)]) | SegmentInputs(cfg, _handler(FakeHandler, cfg))
        assert_that(summaries | beam.Map(lambda s: (s["frames"], s["errors"])), equal_to([(FRAMES, 0)]))
    assert (_counter(p.result, "segments_resumed"), _counter(p.result, "frames_decoded")) == (2, SEGMENT)
    assert _labelled_frames(cfg, source) == list(range(SEGMENT, 2 * SEGMENT))
    assert _done(cfg, source)["frames"] == FRAMES
    assert _errors(cfg, source) == []  # the earlier run's errors are gone with their cause
    shown = _video_indices(cfg, source)
    assert [shown[i] for i in range(FRAMES) if i != POISONED] == [i for i in range(FRAMES) if i != POISONED]


def test_temporal_fusion_writes_each_frame_once_in_order_and_never_its_context(tmp_path):
    # 128 rows, so that the index bars (where frame 7 turns to 8, four of them flip) weigh too
    # little to look like a scene cut: at 96 rows the residual after warping 8 onto 7 was 15.4
    clip = _encode(tmp_path / "clip.mp4", _panning_scene(FRAMES, height=128))
    cfg = RunConfig(output=str(tmp_path / "out"), quality="fast", temporal=1, segment_frames=SEGMENT,
                    legend="none")  # the legend would cover the frame-index bars
    with TestPipeline() as p:
        summaries = p | beam.Create([str(clip)]) | SegmentInputs(cfg, _handler(FakeScoresHandler, cfg))
        assert_that(summaries | beam.Map(lambda s: (s["frames"], s["errors"])), equal_to([(FRAMES, 0)]))
    assert _done(cfg, clip) is not None
    # each unit's table holds its own frames only: the neighbours it decoded for fusion
    # (one before, one after) are never written as its frames
    tables = sorted(Path(cfg.output, "coverage", _iid(clip)).glob("*.parquet"))
    rows = [pq.read_table(t, columns=["frame_index", "flicker"]).to_pylist() for t in tables]
    assert [[r["frame_index"] for r in unit] for unit in rows] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    # fused: the flicker against the previous frame is measured for every frame but the first,
    # including the first of each unit (its previous frame came as context)
    assert [r["flicker"] is not None for unit in rows for r in unit] == [False] + [True] * (FRAMES - 1)
    assert _labelled_frames(cfg, clip) == list(range(FRAMES))
    assert _video_indices(cfg, clip, STRIP) == list(range(FRAMES))
    assert video.probe(cfg.layout.video(_iid(clip))).frame_count == FRAMES
