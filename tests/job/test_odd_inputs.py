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


def test_a_still_whose_read_never_returns_fails_within_the_deadline(tmp_path, monkeypatch):
    """A regular file on a mount that stopped answering: the read is given up after the run's
    --storage-deadline, and the input fails with that reason instead of stalling its worker."""
    import threading

    from beam_seg.media import images
    from beam_seg.pipeline.decode import decode_unit, plan_units

    still = tmp_path / "still.png"
    still.write_bytes(b"\x89PNG not really")
    hung = threading.Event()
    monkeypatch.setattr(images, "decode_image", lambda stream, max_pixels: hung.wait())
    previous = storage.deadline_s()
    try:
        cfg = RunConfig(output=str(tmp_path / "out"), storage_deadline=1.0)
        storage.set_deadline(cfg.storage_deadline)  # as each step's setup does on its worker
        (unit,) = plan_units(str(still), cfg)
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"still.png: no answer within 1 s"):
            next(decode_unit(unit, cfg))
        assert time.monotonic() - started < 3
        assert storage.outage() is None  # one input, not the whole store
    finally:
        hung.set()
        storage.set_deadline(previous)
