"""Fast tier: the pipeline's wiring on Beam's TestPipeline with a fake model.

Real decode, real writes, real grouping and finishing; only the model is a stand-in, so
these run in seconds and pin down what flows between the steps.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from fakes import FakeHandler
from PIL import Image

from beam_seg import naming
from beam_seg.config import RunConfig
from beam_seg.media import video
from beam_seg.media.render import read_label_png
from beam_seg.pipeline.transforms import SegmentInputs

from conftest import make_index_video


def _run(inputs: list[str], cfg: RunConfig, expected: list[tuple[str, int, int]]) -> None:
    """Run SegmentInputs and check its summaries: (file name, frames, errors) per input."""
    handler = FakeHandler(cfg.model, cfg.labels, 1, cfg.inference_settings(), interpreters=1)
    with TestPipeline() as p:
        summaries = p | beam.Create(inputs) | SegmentInputs(cfg, handler)
        assert_that(summaries | beam.Map(lambda s: (os.path.basename(s["source_uri"]), s["frames"],
                                                    s["errors"])),
                    equal_to(expected))


def test_images_videos_and_bad_inputs_flow_to_one_summary_each(tmp_path):
    still = tmp_path / "still.png"
    Image.fromarray(np.full((48, 80, 3), (100, 30, 200), np.uint8)).save(still)
    clip = make_index_video(tmp_path / "clip.mp4", 10)
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    cfg = RunConfig(output=str(tmp_path / "out"), quality="fast", segment_frames=4)
    _run([str(still), str(clip), str(bad)], cfg,
         [("still.png", 1, 0), ("clip.mp4", 10, 0), ("bad.jpg", 0, 1)])

    layout = cfg.layout
    still_id, clip_id, bad_id = (naming.input_id(str(p)) for p in (still, clip, bad))
    # the still's label map is the fake model's rule at source size: red 100 -> class 6
    labels = read_label_png(Path(layout.label_png(still_id, 0)).read_bytes())
    assert labels.shape == (48, 80)
    assert set(np.unique(labels)) == {100 // 16}
    # the video: a label map per frame, one joined mp4 of all frames, both inputs marked done
    assert len(os.listdir(os.path.dirname(layout.label_png(clip_id, 0)))) == 10
    assert video.probe(layout.video(clip_id)).frame_count == 10
    for iid in (still_id, clip_id):
        marker = json.loads(Path(layout.done_marker(iid)).read_text())
        assert marker["fingerprint"] == cfg.fingerprint and marker["errors"] == 0
    # the bad input: no done marker, an error record a person can read
    assert not os.path.exists(layout.done_marker(bad_id))
    errors = Path(layout.root, "errors", bad_id + ".jsonl").read_text().splitlines()
    record = json.loads(errors[0])
    assert record["step"] == "decode" and "not a readable image" in record["reason"]
    assert "0x" not in record["reason"]  # no object reprs
