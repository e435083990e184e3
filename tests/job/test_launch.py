"""Fast tier: what `beam-seg segment` says and returns before and around the pipeline."""

from __future__ import annotations

import io
import os
import threading

import numpy as np
import pytest
from PIL import Image

from beam_seg import cli, naming
from beam_seg.config import RunConfig
from beam_seg.job.inputs import expand_inputs
from beam_seg.job.launch import build_parser, run
from beam_seg.job.summary import failed_inputs, print_failures
from beam_seg.media.images import decode_image
from beam_seg.pipeline import markers
from beam_seg.pipeline.records import ErrorRecord


def _still(path, color=(100, 30, 200)):
    Image.fromarray(np.full((24, 40, 3), color, np.uint8)).save(path)
    return path


def _segment(capsys, *args) -> tuple[int, str, str]:
    code = run([str(a) for a in args], save_main_session=False)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("typo", "meant"), [("--qualty", "--quality"), ("--overwite", "--overwrite"),
                                             ("--direct_num_worker", "--direct_num_workers")])
def test_an_unknown_option_is_one_line_with_a_suggestion(tmp_path, capsys, typo, meant):
    code, _, err = _segment(capsys, _still(tmp_path / "a.png"), "--output", tmp_path / "o", typo, "1")
    assert code == 2
    assert err.strip().splitlines() == [f"beam-seg: error: unknown option {typo}; did you mean {meant}?"]
    assert not (tmp_path / "o").exists()


def test_an_unknown_runner_is_one_line(tmp_path, capsys):
    code, _, err = _segment(capsys, _still(tmp_path / "a.png"), "--output", tmp_path / "o",
                            "--runner=Bogus")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "--runner Bogus" in err and "Traceback" not in err


def test_inputs_without_media_exit_2_and_say_what_was_searched(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "song.m4a").write_bytes(b"\0" * 10)
    code, _, err = _segment(capsys, tmp_path, "--output", tmp_path / "o")
    assert code == 2
    assert f"no images or videos found in {tmp_path}" in err and ".mp4" in err


def test_a_folder_scan_counts_what_it_ignores_and_reads_animated_gifs_as_images(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("x")
    (tmp_path / "song.m4a").write_bytes(b"\0")
    frames = [Image.fromarray(np.full((8, 8, 3), c, np.uint8)) for c in ((250, 0, 0), (0, 250, 0))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    found = expand_inputs([str(tmp_path)])
    assert found.inputs == [str(tmp_path / "anim.gif")]
    assert found.ignored == sorted([str(tmp_path / "song.m4a"), str(tmp_path / "sub" / "notes.txt")])
    rgb = decode_image((tmp_path / "anim.gif").read_bytes())
    assert rgb.shape == (8, 8, 3) and rgb[..., 0].mean() > 200 and rgb[..., 1].mean() < 50  # frame 0


def test_symlinked_folders_are_followed_once(tmp_path):
    (tmp_path / "real").mkdir()
    _still(tmp_path / "real" / "a.png")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "loop").symlink_to(tmp_path)  # a loop back up the tree
    found = expand_inputs([str(tmp_path)])
    assert [p.rsplit("/", 1)[1] for p in found.inputs] == ["a.png"]


def _finished_earlier(tmp_path, **options) -> tuple[str, RunConfig]:
    still = str(_still(tmp_path / "a.png"))
    cfg = RunConfig(output=str(tmp_path / "o"), **options)
    markers.write_done_marker(naming.input_id(still), {"frames": 1, "errors": 0}, cfg.layout,
                              cfg.fingerprint, cfg.output_options())
    coverage = cfg.layout.coverage(naming.input_id(still), 0)  # its outputs are there
    os.makedirs(os.path.dirname(coverage))
    open(coverage, "wb").close()
    return still, cfg


@pytest.mark.parametrize(("change", "named"), [(("--model", "pascal-mnv2-quant"), "model"),
                                               (("--quality", "balanced"), "quality")])
def test_a_rerun_with_other_options_refuses_rather_than_keep_stale_outputs(tmp_path, capsys, change, named):
    still, cfg = _finished_earlier(tmp_path, quality="fast")
    code, _, err = _segment(capsys, still, "--output", cfg.output, "--quality", "fast", *change)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert f"{named} " in err and "--overwrite" in err


def test_a_rerun_with_the_same_options_skips_and_says_so_apart_from_successes(tmp_path, capsys):
    still, cfg = _finished_earlier(tmp_path, quality="fast")
    code, out, _ = _segment(capsys, still, "--output", cfg.output, "--quality", "fast")
    assert code == 0
    assert "inputs       1: 0 succeeded, 0 failed, 1 skipped as already done" in out
    assert "model        cityscapes-edgetpu-slim, quality fast" in out


def test_failed_inputs_are_listed_with_their_reasons_up_to_twenty(tmp_path):
    cfg = RunConfig(output=str(tmp_path / "o"))
    sources = [f"/in/bad{i:02d}.jpg" for i in range(23)]
    for uri in sources:
        path = tmp_path / "o" / "errors" / (naming.input_id(uri) + ".jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        record = ErrorRecord(uri, naming.input_id(uri), "decode", f"not a readable image ({uri})")
        path.write_text(record.to_json() + "\n")
    from beam_seg.job.inputs import Plan

    failures = failed_inputs(Plan(sources[:22]), cfg)  # the 23rd was not part of this run
    stream = io.StringIO()
    print_failures(failures, stream)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 21 and lines[-1] == "... and 2 more failed inputs"
    assert lines[0] == "failed: /in/bad00.jpg: decode: not a readable image (/in/bad00.jpg)"


def test_a_failed_input_is_listed_with_its_cause_not_a_consequence(tmp_path):
    cfg = RunConfig(output=str(tmp_path / "o"))
    uri, iid = "/in/wide.jpg", naming.input_id("/in/wide.jpg")
    records = [ErrorRecord(uri, iid, "write", "1 of 1 frames have no outputs", 0, 1),  # sorts first
               ErrorRecord(uri, iid, "write", "ValueError: would need 405 windows", 0, 1,
                           ["Traceback ...", "ValueError: would need 405 windows"])]
    path = tmp_path / "o" / "errors" / (iid + ".jsonl")
    path.parent.mkdir(parents=True)
    path.write_text("".join(r.to_json() + "\n" for r in records))
    from beam_seg.job.inputs import Plan

    assert failed_inputs(Plan([uri]), cfg) == [(uri, "write: ValueError: would need 405 windows")]


def test_version_and_help_name_the_command(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("beam-seg ")
    assert build_parser().format_usage().startswith("usage: beam-seg segment ")


def test_progress_lines_say_done_of_planned_rate_and_eta_and_thin_out_on_long_runs():
    from beam_seg.job.progress import format_eta, line_interval, progress_line

    assert progress_line(200, 50, 10.0) == "frames 50/200 (25%), 10.0 frames/s, ETA 0:15"
    assert progress_line(200, 0, 0.0).endswith("ETA ?")
    assert format_eta(3725) == "1:02:05"
    assert [line_interval(t) for t in (0, 5, 30, 600)] == [1.0, 1.0, 3.0, 10.0]


def test_a_runner_that_sets_signal_handlers_is_submitted_from_the_main_thread(tmp_path, tiny_model):
    """The DirectRunner's run goes on beside the main thread (which must stay free to hear a
    stop signal); other runners are submitted from the main thread itself, since a portable
    runner's job server sets signal handlers there (elsewhere Python raises ValueError)."""
    from fakes import SignalSettingRunner

    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(image)
    SignalSettingRunner.threads.clear()
    code = cli.main(["segment", str(image), "--output", str(tmp_path / "out"), *tiny_model,
                     "--runner", "fakes.SignalSettingRunner"])
    assert code == 0
    assert SignalSettingRunner.threads == [threading.main_thread()]
