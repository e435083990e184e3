"""Commands that behave alike: OUT taken the same way, no abbreviations, a suggestion for an
unknown option or class, a file where a folder belongs named as such, one UsageError and one
set of exit codes, and a summary that lists only what the run wrote. No model runs here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from beam_seg.commands import commands
from beam_seg.config import RunConfig
from beam_seg.job import exits
from beam_seg.job.inputs import describe_differences
from beam_seg.job.summary import output_lines

from cli_runs import run_in_process
from synthetic_run import IID, write_synthetic_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("commands") / "out"
    write_synthetic_run(out)
    return out


@pytest.fixture(scope="module")
def a_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("file") / "afile"
    path.write_text("not a folder")
    return path


def beam_seg(*argv) -> tuple[int, str, str]:
    return run_in_process(*argv)


def one_error(err: str) -> str:
    """The one line a usage error prints, without its prefix."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("beam-seg: error: "), err
    return lines[0][len("beam-seg: error: "):]


def test_an_unknown_class_is_one_line_with_the_nearest_class_and_exit_2(run):
    code, out, err = beam_seg("events", run, "--class", "cars")
    assert (code, out) == (2, "")
    assert one_error(err) == "unknown class 'cars'; did you mean 'car'?"
    code, out, _ = beam_seg("events", run, "--class", "car", "--format", "csv")
    assert code == 0 and out.count(f"{IID},car,") == 1  # the run's one car event


@pytest.mark.parametrize("argv, typo, meant", [
    (["events", "{run}", "--fromat", "csv"], "--fromat", "--format"),
    (["report", "{run}", "--max-plot", "3"], "--max-plot", "--max-plots"),  # an abbreviation
    (["events", "{run}", "--form", "csv"], "--form", "--format"),  # an abbreviation
    (["eval", "{run}", "--ground", "gt"], "--ground", "--ground-truth"),  # an abbreviation
    (["models", "--verbos"], "--verbos", None),
])
def test_every_command_refuses_abbreviations_and_suggests_the_option_meant(run, argv, typo, meant):
    code, _, err = beam_seg(*(a.format(run=run) for a in argv))
    assert code == 2
    assert one_error(err) == f"unknown option {typo}" + (f"; did you mean {meant}?" if meant else "")


def test_an_unknown_command_gets_a_suggestion():
    code, _, err = beam_seg("segmnt", "clip.mp4")
    assert code == 2
    assert one_error(err).startswith("unknown command 'segmnt'; did you mean 'segment'?")


def test_every_after_run_command_takes_out_as_a_plain_argument_or_as_output(run, tmp_path):
    plain = beam_seg("events", run, "--format", "csv")
    assert plain[0] == 0 and plain == beam_seg("events", "--output", run, "--format", "csv")
    (tmp_path / "gt").mkdir()
    for argv in (["eval", run, "--ground-truth", tmp_path / "gt"],
                 ["eval", "--output", run, "--ground-truth", tmp_path / "gt"]):
        code, _, err = beam_seg(*argv)  # OUT was read: its predictions matched no ground truth
        assert code == 2 and one_error(err).startswith("no prediction matched")
    code, out, _ = beam_seg("report", "--output", run, "--html", tmp_path / "r.html")
    assert code == 0 and IID in out
    for argv in (["events"], ["report"], ["eval", "--ground-truth", tmp_path / "gt"]):
        code, _, err = beam_seg(*argv)
        assert code == 2 and "the output root OUT is required" in one_error(err)
    code, _, err = beam_seg("events", run, "--output", tmp_path)
    assert code == 2 and one_error(err).startswith("one output root, please")


@pytest.mark.parametrize("argv, what", [
    (["report", "{file}"], "output folder '{file}'"),
    (["events", "{file}"], "output folder '{file}'"),
    (["eval", "{file}", "--ground-truth", "{file}"], "output folder '{file}'"),
    (["eval", "{run}", "--ground-truth", "{file}"], "ground-truth folder '{file}'"),
])
def test_a_file_where_a_folder_is_expected_is_named_as_such(run, a_file, argv, what):
    code, _, err = beam_seg(*(a.format(run=run, file=a_file) for a in argv))
    assert code == 2
    assert one_error(err) == what.format(file=a_file) + " is a file, not a folder"


def test_a_file_as_segments_output_is_named_as_such(a_file, tmp_path):
    still = tmp_path / "still.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(still)
    for out in (a_file, a_file / "sub"):
        code, _, err = beam_seg("segment", still, "--output", out)
        assert code == 2
        assert one_error(err) == f"--output {out}: {a_file} is a file, not a folder"


def test_a_missing_output_folder_still_says_it_does_not_exist(tmp_path):
    code, _, err = beam_seg("report", tmp_path / "nope")
    assert code == 2 and one_error(err) == f"output folder '{tmp_path / 'nope'}' does not exist"


def test_one_usage_error_and_one_set_of_exit_codes_for_every_command(tmp_path):
    assert commands.UsageError is exits.UsageError
    broken = tmp_path / "out" / "coverage" / "x-0123abcd" / "segment-00000.parquet"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not parquet")
    for command in ("events", "report"):  # a table that cannot be read: a failure, not usage
        code, _, err = beam_seg(command, tmp_path / "out")
        assert code == exits.EXIT_FAILED != exits.EXIT_USAGE
        assert "Traceback" not in err and one_error(err)


@pytest.mark.parametrize("inputs", ["missing", "empty"])
def test_a_missing_input_or_an_empty_input_folder_leaves_no_output_folder(tmp_path, inputs):
    source = tmp_path / "in"
    if inputs == "empty":
        source.mkdir()
    code, _, err = beam_seg("segment", source, "--output", tmp_path / "out")
    assert code == 2
    assert one_error(err).startswith("input not found" if inputs == "missing" else "no images or videos")
    assert not (tmp_path / "out").exists()


def test_a_rerun_with_other_options_names_an_unset_option_as_default_never_none():
    before = {"model": "m", "quality": None, "alpha": 0.5}
    now = {"model": "m", "quality": "fast", "alpha": 0.5, "legend": "video"}
    assert describe_differences(before, now) == "quality default -> 'fast', legend (not recorded) -> 'video'"
    assert describe_differences(now, before | {"legend": "video"}) == "quality 'fast' -> default"


def _summary(processed: int, videos: int) -> dict:
    return {"processed": processed, "videos_processed": videos}


def test_the_summary_lists_only_the_folders_the_run_wrote(tmp_path):
    cfg = RunConfig(output=str(tmp_path))
    folders = {kind: [line.split()[0] for line in output_lines(_summary(*counts), cfg)[1:]]
               for kind, counts in (("stills", (3, 0)), ("with a video", (3, 1)))}
    assert folders == {"stills": ["labels/", "overlays/", "coverage/"],
                       "with a video": ["labels/", "overlays/", "coverage/", "videos/", "events/"]}
    assert output_lines(_summary(0, 0), cfg) == [
        f"outputs      {tmp_path} (nothing new: every input was already done)"]
