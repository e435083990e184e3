"""The smaller defects of issue 16, each at the function that had it (fast: no model)."""

from __future__ import annotations

import time

import pytest

from beam_seg import storage
from beam_seg.config import RunConfig
from beam_seg.job.inputs import expand_inputs
from beam_seg.pipeline import decode
from beam_seg.pipeline.transforms import _inference_dead_letters

from conftest import make_index_video


def test_a_jpg_that_is_dev_zero_is_refused_from_its_first_bytes(tmp_path):
    """It used to be read whole first (4.5 GB, then MemoryError); now a device is refused at
    planning (issue 23), and again when it is opened (it may have replaced a file since)."""
    fake = tmp_path / "zero.jpg"
    fake.symlink_to("/dev/zero")
    cfg = RunConfig(output=str(tmp_path / "out"))
    started = time.monotonic()
    with pytest.raises(ValueError, match="not a regular file: a character device"):
        decode.plan_units(str(fake), cfg)
    assert time.monotonic() - started < 5
    with pytest.raises(ValueError, match="not a regular file: a character device"):
        storage.open_for_read(str(fake))


def test_file_uri_inputs_are_plain_paths(tmp_path):
    clip = make_index_video(tmp_path / "clip.mp4", 3)
    assert expand_inputs([f"file://{clip}"]).inputs == [str(clip)]
    assert expand_inputs([f"file://{tmp_path}"]).inputs == [str(clip)]


def test_an_inference_error_reads_as_its_exception_not_a_tuple():
    """Beam hands failed inferences over as (batch, (type, repr, traceback lines))."""
    dead = (["/data/clip.mp4"], (ValueError, "ValueError('input has 4 channels')",
                                 ['  File "model.py", line 3, in run\n',
                                  "ValueError: input has 4 channels\n"]))
    (record,) = _inference_dead_letters(dead)
    assert record.reason == "ValueError: input has 4 channels"
    assert "tuple" not in record.reason and "<class" not in record.reason
