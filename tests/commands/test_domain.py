"""The out-of-domain warning: the pure decision, and what the summary and the report say,
on synthetic runs (coverage tables with chosen confidences, no model)."""

from __future__ import annotations

import pytest

from beam_seg import naming
from beam_seg.config import RunConfig
from beam_seg.job.inputs import Plan
from beam_seg.job.summary import out_of_domain, summary_lines
from beam_seg.tables import domain
from beam_seg.tables.domain import Calibration, InputConfidence

from cli_runs import run_in_process
from synthetic_run import write_still_run

DEFAULT = "cityscapes-edgetpu-slim"
CAL = domain.CALIBRATIONS[DEFAULT]
FAKE = {"m": Calibration("Home", in_domain={"fast": 0.9, "high": 0.8},
                         threshold={"fast": 0.7, "high": 0.6}, alternative="better-m")}


def _input(iid: str, confidence: float | None, model: str = "m", kind: str = "image") -> InputConfidence:
    return InputConfidence(iid, f"/data/{iid}.jpg", kind, model, 1, confidence)


def test_inputs_below_their_presets_threshold_are_counted_against_every_judged_input():
    inputs = [_input("a", 0.65), _input("b", 0.65), _input("c", 0.55), _input("d", 0.95)]
    presets = {"a": "fast", "b": "high", "c": "high", "d": "fast"}  # b is above high's 0.6
    [warning] = domain.domain_warning(inputs, presets, FAKE)
    assert [i.input_id for i in warning.low] == ["c", "a"]  # least confident first
    assert warning.judged == 4
    assert warning.mean_low == pytest.approx((0.65 + 0.55) / 2)
    assert warning.in_domain == pytest.approx((0.9 + 0.8) / 2)  # each low input's preset
    assert warning.alternative == "better-m"


def test_no_warning_without_a_low_input_a_calibration_a_confidence_or_a_known_preset():
    assert domain.domain_warning([_input("a", 0.9)], {"a": "fast"}, FAKE) == []
    assert domain.domain_warning([_input("a", 0.1, model="other")], {"a": "fast"}, FAKE) == []
    assert domain.domain_warning([_input("a", None)], {"a": "fast"}, FAKE) == []
    assert domain.domain_warning([_input("a", 0.1)], {}, FAKE) == []
    assert domain.domain_warning([_input("a", 0.1)], {"a": "balanced"}, FAKE) == []  # not calibrated


def test_the_message_is_two_plain_lines_that_name_the_stronger_model():
    [warning] = domain.domain_warning([_input("a", 0.5), _input("b", 0.95)], {"a": "fast", "b": "fast"}, FAKE)
    first, second = warning.lines()
    assert first.startswith("1 of 2 inputs look unlike the footage m was trained on")
    assert "(mean confidence 0.50 against 0.90 on Home)" in first
    assert "--model better-m" in second
    alone = Calibration("Home", {"fast": 0.9}, {"fast": 0.7}, alternative=None)
    [warning] = domain.domain_warning([_input("a", 0.5)], {"a": "fast"}, {"m": alone})
    assert len(warning.lines()) == 1


def test_the_default_model_is_calibrated_at_every_preset_and_points_at_b0():
    assert CAL.alternative == "efficientvit-b0-cityscapes"
    for preset in domain.PRESETS:
        assert 0 < CAL.threshold[preset] < CAL.in_domain[preset] < 1


def test_the_least_confident_inputs_are_named_at_most_k():
    inputs = [_input(f"i{n}", 0.5 - 0.01 * n) for n in range(5)]
    [warning] = domain.domain_warning(inputs, dict.fromkeys([i.input_id for i in inputs], "fast"), FAKE)
    assert warning.least_confident(2) == "Least confident: i4 (0.46), i3 (0.47) and 3 more."
    assert domain.warning_lines([warning], name_inputs=True)[-1].startswith("Least confident: i4")
    assert len(domain.warning_lines([warning])) == 2


def test_only_inputs_low_at_some_preset_need_their_preset_looked_up():
    top = max(FAKE["m"].threshold.values())
    inputs = [_input("a", top - 0.01), _input("b", top + 0.01), _input("c", None), _input("d", 0.1, "x")]
    assert domain.candidates(inputs, FAKE) == ["a"]


def test_presets_come_from_the_done_markers(tmp_path):
    write_still_run(tmp_path, [("/d/a.jpg", DEFAULT, 0.9)], quality="fast")
    write_still_run(tmp_path, [("/d/b.jpg", DEFAULT, 0.9)], quality=None)
    ids = [naming.input_id("/d/a.jpg"), naming.input_id("/d/b.jpg"), "missing-00000000"]
    assert domain.presets_from_markers(str(tmp_path), ids) == dict(zip(ids, ["fast", "high", None],
                                                                            strict=True))


def _stills(low: int, high: int) -> list[tuple[str, str, float]]:
    """`low` stills below the default model's `high` threshold and `high` stills above it."""
    t = CAL.threshold["high"]
    return ([(f"/footage/us-{i}.jpg", DEFAULT, t - 0.1 - 0.01 * i) for i in range(low)]
            + [(f"/footage/de-{i}.jpg", DEFAULT, t + 0.03) for i in range(high)])


def test_the_summary_warns_about_the_runs_own_inputs_only(tmp_path):
    stills = _stills(2, 1)
    write_still_run(tmp_path, stills)
    write_still_run(tmp_path, [("/elsewhere/old.jpg", DEFAULT, 0.1)])  # an earlier run's input
    cfg = RunConfig(output=str(tmp_path))
    plan = Plan(inputs=[stills[0][0], stills[2][0]], skipped=[stills[1][0]])
    lines = out_of_domain(plan, cfg)
    mean_low = (stills[0][2] + stills[1][2]) / 2
    assert lines[0].startswith(f"2 of 3 inputs look unlike the footage {DEFAULT} was trained on")
    assert f"(mean confidence {mean_low:.2f} against {CAL.in_domain['high']:.2f} on Cityscapes)" in lines[0]
    assert "--model efficientvit-b0-cityscapes" in lines[1]
    summary = {"inputs": 3, "succeeded": 2, "failed": 0, "skipped_already_done": 1, "source_changed": 0,
               "segments_source_changed": 0, "ignored_files": 0, "frames_segmented": 2,
               "frames_decoded": 2, "frames_context": 0, "segments_resumed": 0, "wall_time_s": 1.0,
               "frames_per_s": 2.0, "inference_ms_per_frame": None, "processed": 2, "out_of_domain": lines}
    text = summary_lines(summary, cfg, DEFAULT)
    assert f"warning      {lines[0]}" in text
    assert f"             {lines[1]}" in text


def test_a_large_run_is_judged_on_an_even_sample_and_says_so(tmp_path):
    stills = _stills(6, 4)
    write_still_run(tmp_path, stills)
    plan, cfg = Plan(inputs=[s[0] for s in stills]), RunConfig(output=str(tmp_path))
    [first, _] = out_of_domain(plan, cfg, limit=5)
    assert first.endswith("(an even sample of 5 of the run's 10 inputs)")
    assert first.split()[2] == "5"  # "N of 5 inputs"
    [whole, _] = out_of_domain(plan, cfg, limit=10)
    assert whole.startswith("6 of 10 inputs") and "sample" not in whole


def test_the_preset_of_the_run_decides(tmp_path):
    """A confidence between the fast and high thresholds is low at one and not at the other."""
    assert CAL.threshold["fast"] > CAL.threshold["high"]
    value = (CAL.threshold["fast"] + CAL.threshold["high"]) / 2
    write_still_run(tmp_path, [("/f/a.jpg", DEFAULT, value)])
    plan = Plan(inputs=["/f/a.jpg"])
    assert out_of_domain(plan, RunConfig(output=str(tmp_path))) == []  # stills: high
    assert len(out_of_domain(plan, RunConfig(output=str(tmp_path), quality="fast"))) == 2


def test_no_warning_for_in_domain_runs_unknown_models_or_unreadable_outputs(tmp_path):
    in_domain = _stills(0, 3)
    write_still_run(tmp_path / "in", in_domain)
    assert out_of_domain(Plan(inputs=[s[0] for s in in_domain]), RunConfig(output=str(tmp_path / "in"))) == []
    write_still_run(tmp_path / "own", [("/f/a.jpg", "my-model.tflite", 0.1)])
    assert out_of_domain(Plan(inputs=["/f/a.jpg"]), RunConfig(output=str(tmp_path / "own"))) == []
    assert out_of_domain(Plan(inputs=["/f/a.jpg"]), RunConfig(output=str(tmp_path / "none"))) == []


def _report(*argv: str) -> tuple[int, str]:
    code, out, _ = run_in_process("report", *argv)
    return code, out


def test_the_report_says_it_on_the_terminal_and_on_the_page(tmp_path):
    write_still_run(tmp_path, _stills(2, 2))
    code, text = _report(str(tmp_path))
    assert code == 0
    assert "warning: 2 of 4 inputs look unlike the footage" in text
    page = (tmp_path / "report" / "report.html").read_text()
    assert '<div class="warn">2 of 4 inputs look unlike the footage' in page
    assert "--model efficientvit-b0-cityscapes" in page
    (one, c1), (zero, c0) = [(naming.input_id(uri), c) for uri, _, c in reversed(_stills(2, 0))]
    assert f"Least confident: {one} ({c1:.2f}), {zero} ({c0:.2f})." in text  # least first
    assert f"Least confident: {one} ({c1:.2f})" in page


def test_the_report_of_an_in_domain_run_has_no_warning(tmp_path):
    write_still_run(tmp_path, _stills(0, 2))
    code, text = _report(str(tmp_path))
    assert code == 0 and "warning" not in text
    assert 'class="warn"' not in (tmp_path / "report" / "report.html").read_text()
