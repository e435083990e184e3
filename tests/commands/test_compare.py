"""`beam-seg report OUT_A OUT_B`: two runs of the same inputs side by side, on synthetic runs."""

from __future__ import annotations

import re

from beam_seg import naming
from beam_seg.tables import domain

from cli_runs import run_in_process
from synthetic_run import write_still_run

DEFAULT = "cityscapes-edgetpu-slim"
B0 = domain.STRONGER_CITYSCAPES_MODEL
LOW = domain.CALIBRATIONS[DEFAULT].threshold["high"] - 0.2
SOURCES = ["/footage/one.jpg", "/footage/two.jpg"]


def _report(*argv: str) -> tuple[int, str, str]:
    return run_in_process("report", *argv)


def _two_runs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_still_run(a, [(uri, DEFAULT, LOW) for uri in SOURCES])
    write_still_run(a, [("/footage/only-a.jpg", DEFAULT, 0.99)])
    write_still_run(b, [(uri, B0, 0.97) for uri in SOURCES], car_share=0.25)
    return a, b


def test_the_terminal_lists_each_shared_input_with_both_runs(tmp_path):
    a, b = _two_runs(tmp_path)
    code, text, _ = _report(str(a), str(b))
    assert code == 0
    assert f"A: {a} (model {DEFAULT}, 3 inputs)" in text
    assert f"B: {b} (model {B0}, 2 inputs)" in text
    assert "2 inputs in both runs" in text
    for uri in SOURCES:
        row = next(line for line in text.splitlines() if line.startswith(naming.input_id(uri)))
        assert f"{LOW:.2f}" in row and "0.97" in row
        assert "car 25.0%" in row  # B's class mix; A has no car
    assert f"A: 2 of 3 inputs look unlike the footage {DEFAULT}" not in text  # only shared inputs
    assert f"A: 2 of 2 inputs look unlike the footage {DEFAULT}" in text
    assert "B: 2 of" not in text  # B's model has no calibration here


def test_the_page_shows_both_runs_side_by_side(tmp_path):
    a, b = _two_runs(tmp_path)
    code, text, _ = _report(str(a), str(b))
    assert code == 0
    page_path = a / "report" / "compare.html"
    assert f"HTML:  {page_path}" in text
    page = page_path.read_text()
    assert page.count('<div class="pair">') == 2
    assert page.count(f"{DEFAULT} &middot; confidence {LOW:.2f}") == 2
    assert page.count(f"{B0} &middot; confidence 0.97") == 2
    assert len(re.findall(r'<img alt="run [AB]: overlay of', page)) == 4
    assert '<div class="warn">A: 2 of 2 inputs' in page
    assert "only-a" not in page


def test_runs_without_shared_inputs_say_so(tmp_path):
    write_still_run(tmp_path / "a", [("/x/one.jpg", DEFAULT, 0.9)])
    write_still_run(tmp_path / "b", [("/y/one.jpg", DEFAULT, 0.9)])
    code, text, _ = _report(str(tmp_path / "a"), str(tmp_path / "b"), "--html", str(tmp_path / "c.html"))
    assert code == 0 and "0 inputs in both runs" in text
    assert "no input in common" in (tmp_path / "c.html").read_text()


def test_more_than_two_runs_is_a_usage_error(tmp_path):
    code, _, err = _report(str(tmp_path), str(tmp_path), str(tmp_path))
    assert code == 2
    assert err.strip() == "beam-seg: error: report takes one OUT, or two to compare (3 given)"


def test_a_missing_second_run_is_one_error_line(tmp_path):
    write_still_run(tmp_path / "a", [("/x/one.jpg", DEFAULT, 0.9)])
    code, _, err = _report(str(tmp_path / "a"), str(tmp_path / "nope"))
    assert code == 2
    assert err.strip() == f"beam-seg: error: output folder {str(tmp_path / 'nope')!r} does not exist"
