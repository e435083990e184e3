"""The out-of-domain warning with the real default model (second tier): it fires on the
bdd100k frames (US dashcam) and stays silent on the aachen frames (its training footage),
in the end-of-run summary and in the report. At --quality fast, one pass a frame."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from beam_seg import cli
from beam_seg.tables.domain import STRONGER_CITYSCAPES_MODEL

from conftest import DATA

pytestmark = pytest.mark.real_model

BDD = sorted((DATA / "bdd100k").glob("*.jpg"))
AACHEN = sorted((DATA / "cityscapes" / "train" / "aachen").glob("*_leftImg8bit.png"))
WARNING = "inputs look unlike the footage cityscapes-edgetpu-slim was trained on"


@dataclass(frozen=True)
class Run:
    out: Path
    stdout: str


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    """Both sets at --quality fast, in this process (the model and Beam are loaded once)."""
    made = {}
    for name, frames in (("bdd100k", BDD), ("aachen", AACHEN)):
        assert frames, f"no {name} frames in {DATA}"
        out = tmp_path_factory.mktemp(name)
        with contextlib.redirect_stdout(io.StringIO()) as stdout:
            code = cli.main(["segment", *map(str, frames), "--output", str(out), "--quality", "fast"])
        assert code == 0, stdout.getvalue()
        made[name] = Run(out, stdout.getvalue())
    return made


def _warning_lines(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    return [line for i, line in enumerate(lines) if WARNING in line or (i and WARNING in lines[i - 1])]


def test_the_summary_warns_on_us_dashcam_frames(runs):
    first, second = _warning_lines(runs["bdd100k"].stdout)
    assert first.startswith("warning      ")
    low = int(first.split()[1])
    assert first.split()[2:4] == ["of", str(len(BDD))]
    assert low >= len(BDD) // 2  # the calibration found 10 of 16 at fast (12 before darkening)
    assert f"--model {STRONGER_CITYSCAPES_MODEL}" in second


def test_the_summary_is_silent_on_the_training_footage(runs):
    assert "== beam-seg summary ==" in runs["aachen"].stdout
    assert _warning_lines(runs["aachen"].stdout) == []


def test_the_report_says_the_same(runs):
    for name, warned in (("bdd100k", True), ("aachen", False)):
        with contextlib.redirect_stdout(io.StringIO()) as text:
            assert cli.main(["report", str(runs[name].out)]) == 0
        assert (WARNING in text.getvalue()) is warned
        page = (runs[name].out / "report" / "report.html").read_text()
        assert (WARNING in page) is warned
