"""Label files are checked against the model, and class names are plain text (issue 23)."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import build_onnx_nhwc

from beam_seg.commands import plots
from beam_seg.commands.queries import TimeSeries
from beam_seg.commands.table import fraction_columns
from beam_seg.job.launch import run
from beam_seg.labels import LabelSet, voc_colormap


def _segment(capsys, *args) -> tuple[int, str]:
    code = run([str(a) for a in args], save_main_session=False)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("model", ["pascal-mnv2-quant", "onnx",
                                   pytest.param("tiny", marks=pytest.mark.real_model)])
def test_a_label_file_with_fewer_names_than_the_model_has_classes_is_refused(
        model, request, tmp_path, capsys):
    labels = tmp_path / "three.txt"
    labels.write_text("background\naeroplane\nbicycle\n")
    model_arg = {"tiny": lambda: request.getfixturevalue("tiny_model")[1],
                 "onnx": lambda: str(build_onnx_nhwc(tmp_path))}.get(model, lambda: model)()
    out = tmp_path / "out"
    code, err = _segment(capsys, tmp_path / "a.png", "--output", out, "--model", model_arg,
                         "--labels", labels)
    assert code == 2
    classes = 21 if model == "pascal-mnv2-quant" else 19
    assert err.strip().splitlines() == [
        f"beam-seg: error: the label set 'three' names 3 classes, but the model "
        f"{model_arg.rsplit('/', 1)[-1]} has {classes}; give --labels the model's own label set"]
    assert not out.exists()


def test_class_names_that_look_like_mathtext_are_drawn_as_text():
    names = ("road", "$\\frac{a$", "50% $x^2$")
    label_set = LabelSet("odd", names, tuple(voc_colormap(3)))
    assert plots.plot_legend([label_set]).startswith(b"\x89PNG")
    times = np.linspace(0, 2, 5)
    fractions = {c: np.full(5, 0.3) for c in fraction_columns(label_set)}
    series = TimeSeries("in-$x_1$", times, {**fractions, "frac_ignore": np.full(5, 0.1)})
    assert plots.plot_coverage_over_time(series, label_set, "clip $\\frac{a$.mp4").startswith(b"\x89PNG")
