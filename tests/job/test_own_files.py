"""A run touches only what it made, and reads only what it was given: the leftover sweep,
output roots with glob characters, symlinked and non-regular inputs (issue 23)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from beam_seg import naming
from beam_seg.job.inputs import expand_inputs

from pipeline_helpers import segment

# end-to-end runs with the tiny TFLite model: the second tier, like test_bad_inputs.py
SECOND_TIER = pytest.mark.real_model


def _still(path, color=(200, 30, 40), size=(24, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), color, np.uint8)).save(path)
    return path


def _user_files(out):
    """Files of a user that look like our temporaries, in OUT and in its subfolders."""
    made = {}
    for rel in ("notes.tmp-0badcafe/thesis.txt", ".thesis.json.tmp-0badcafe",
                "photos/.a.png.tmp-0badcafe", "photos/b.jpg.tmp-0badcafe"):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("precious " + rel)
        made[path] = path.read_text()
    return made


@SECOND_TIER
def test_user_files_of_the_temp_shape_survive_a_refused_run_and_a_normal_run(tiny_model, tmp_path):
    folder = tmp_path / "d"
    _still(folder / "photos" / "still.jpg")
    mine = _user_files(folder)
    assert segment([folder], folder, *tiny_model) == 2  # every input is inside the output root
    assert all(p.read_text() == text for p, text in mine.items())
    out = tmp_path / "out"
    mine.update(_user_files(out))
    leftover = out / "labels" / "x-0badcafe" / ".000000.png.tmp-0123abcd"  # a killed writer's
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half")
    assert segment([folder / "photos" / "still.jpg"], out, *tiny_model) == 0
    assert all(p.read_text() == text for p, text in mine.items())
    assert not leftover.exists()


@SECOND_TIER
def test_an_output_root_with_glob_characters_is_a_literal_folder(tiny_model, tmp_path):
    stills = [_still(tmp_path / "in" / f"s{i}.png", (40 * i, 200, 10)) for i in range(2)]
    victim = tmp_path / "out_victim_y"
    assert segment(stills, victim, *tiny_model) == 0
    before = sorted(p.relative_to(victim) for p in victim.rglob("*"))
    for name in ("out*y", "out[2]"):
        out = tmp_path / name
        assert segment(stills, out, *tiny_model) == 0, name
        assert len(list((out / "_done").iterdir())) == 2, name  # not "already done"
        assert not (out / ".beam_seg_write_check").exists()
    assert segment(stills[:1], tmp_path / "out*x", *tiny_model, "--overwrite") == 0
    assert sorted(p.relative_to(victim) for p in victim.rglob("*")) == before
    marker = json.loads((victim / "_done" / f"{naming.input_id(str(stills[0]))}.json").read_text())
    assert marker["frames"] == 1


def _inputs_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("inputs "))


@SECOND_TIER
def test_a_symlinked_input_folder_never_reads_our_outputs(tiny_model, tmp_path, capsys, caplog):
    folder = tmp_path / "in3"
    for i in range(2):
        _still(folder / f"s{i}.png", (60 * i, 200, 10))
    (tmp_path / "in3link").symlink_to(folder)
    out = folder / "out"
    for name in ("in3", "in3link", "in3link"):
        assert segment([tmp_path / name], out, *tiny_model) == 0
        assert _inputs_line(capsys.readouterr().out).startswith("inputs       2:"), name
    # an output root of another run inside the folder is skipped too, as is a link out of it
    (folder / "other" / "_done").mkdir(parents=True)
    _still(folder / "other" / "overlays" / "x-0badcafe" / "000000.jpg")
    outside = _still(tmp_path / "elsewhere" / "far.png")
    (folder / "far.png").symlink_to(outside)
    capsys.readouterr()
    assert segment([folder], tmp_path / "out2", *tiny_model) == 0
    captured = capsys.readouterr()
    assert _inputs_line(captured.out).startswith("inputs       2:")
    assert f"not followed (a symlink out of the input folder; name it on the command line to " \
           f"include it): {folder / 'far.png'}" in caplog.text
    assert expand_inputs([str(folder / "far.png")]).inputs == [str(folder / "far.png")]  # named


def _error_records(out):
    return [json.loads(line) for path in sorted((out / "errors").glob("*.jsonl"))
            for line in path.read_text().splitlines()]


@SECOND_TIER
def test_inputs_that_are_not_regular_files_are_refused_at_planning(tiny_model, tmp_path, capsys):
    folder = tmp_path / "in"
    good = _still(folder / "good.png")
    os.mkfifo(folder / "cam.jpg")  # nobody ever writes to it: reading it would block forever
    (tmp_path / "x.jpg").mkdir()
    (tmp_path / "passwd.jpg").symlink_to("/etc/passwd")
    (tmp_path / "null.mp4").symlink_to("/dev/null")
    out = tmp_path / "out"
    started = time.monotonic()
    code = segment([folder, tmp_path / "x.jpg", tmp_path / "passwd.jpg", tmp_path / "null.mp4"],
                   out, *tiny_model)
    assert code == 3 and time.monotonic() - started < 60
    captured = capsys.readouterr()
    records = {os.path.basename(r["source_uri"]): r for r in _error_records(out)}
    assert sorted(records) == ["cam.jpg", "null.mp4", "passwd.jpg", "x.jpg"]
    assert records["cam.jpg"]["step"] == "plan"
    assert records["cam.jpg"]["reason"].endswith("not a regular file: a FIFO (named pipe)")
    assert records["x.jpg"]["reason"].endswith("not a regular file: a directory")
    assert records["null.mp4"]["reason"].endswith("not a regular file: a character device")
    assert "not a readable image" in records["passwd.jpg"]["reason"]
    secret = Path("/etc/passwd").read_text()[:8]
    for text in (captured.out, captured.err, *(json.dumps(r) for r in records.values())):
        assert secret not in text
    assert (out / "_done" / f"{naming.input_id(str(good))}.json").exists()


def test_exif_orientation_is_applied_as_photo_viewers_do(tmp_path):
    from beam_seg.media.images import decode_image

    rgb = np.zeros((24, 40, 3), np.uint8)
    rgb[:, :20] = (250, 0, 0)  # the left half red, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    Image.fromarray(rgb).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = decode_image((tmp_path / "phone.jpg").read_bytes())
    assert upright.shape == (40, 24, 3)
    assert upright[:20, :, 0].mean() > 200 and upright[20:, :, 0].mean() < 50  # red on top


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares its size and holds no pixels: enough for a header check."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


def test_max_image_pixels_is_the_limit_even_above_pillows_own():
    from beam_seg.media.images import ImageTooLargeError, decode_image

    big = _png_header(15_000, 15_000)  # 225 MP: above Pillow's 179 MP bomb limit
    with pytest.raises(ImageTooLargeError, match="over the limit of 200000000"):
        decode_image(big, max_pixels=200_000_000)
    with pytest.raises(Exception) as raised:  # allowed: then it fails only for having no pixels
        decode_image(big, max_pixels=250_000_000)
    assert not isinstance(raised.value, ImageTooLargeError)
    with pytest.raises(ImageTooLargeError, match="over the limit of 1000"):  # bombs still bounded
        decode_image(_png_header(100_000, 100_000), max_pixels=1000)


@SECOND_TIER
def test_a_done_input_whose_outputs_are_gone_is_redone_and_no_empty_work_folder_stays(
        tiny_model, tmp_path, capsys, caplog):
    from conftest import make_index_video

    stills = [_still(tmp_path / "in" / f"s{i}.png", (90 * i, 200, 10)) for i in range(2)]
    clip = make_index_video(tmp_path / "in" / "clip.mp4", 6)
    out = tmp_path / "out"
    assert segment([*stills, clip], out, *tiny_model, "--segment-frames", "3") == 0
    assert not (out / "_work").exists()  # issue 22: the empty _work/ folder is gone
    gone = naming.input_id(str(stills[0]))
    for folder in ("labels", "overlays", "coverage"):
        for path in (out / folder / gone).iterdir():
            path.unlink()
    (out / "videos" / f"{naming.input_id(str(clip))}.mp4").unlink()
    capsys.readouterr()
    assert segment([*stills, clip], out, *tiny_model, "--segment-frames", "3") == 0
    assert f"{stills[0]} was done, but its outputs are gone (coverage/{gone}/segment-00000.parquet); " \
           "redone" in caplog.text
    assert f"{clip} was done, but its outputs are gone (videos/" in caplog.text
    summary = _inputs_line(capsys.readouterr().out)
    assert summary.startswith("inputs       3: 2 succeeded, 0 failed, 1 skipped")
    assert (out / "coverage" / gone / "segment-00000.parquet").is_file()
    assert (out / "videos" / f"{naming.input_id(str(clip))}.mp4").is_file()
