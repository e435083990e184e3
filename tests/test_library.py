"""beam_seg as a library: the public names, a cheap `import beam_seg`, and someone else's
pipeline (examples/count_classes.py) that borrows the model handler."""

from __future__ import annotations

import csv
import doctest
import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from fakes import FakeHandler
from PIL import Image

import beam_seg
from beam_seg.labels import CITYSCAPES
from beam_seg.tables import coverage

from conftest import DATA, ROOT

EXAMPLE = ROOT / "examples" / "count_classes.py"


def _example():
    spec = importlib.util.spec_from_file_location("count_classes", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_import_beam_seg_loads_neither_beam_nor_a_model_library():
    code = ("import sys, beam_seg; heavy = [m for m in ('apache_beam', 'tensorflow', 'numpy', "
            "'pyarrow', 'cv2') if m in sys.modules]; print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_the_public_names_are_the_package_s_own_objects():
    from apache_beam.ml.inference.base import ModelHandler

    from beam_seg import (
        EVENT_SCHEMA,
        REGISTRY,
        DeepLabModelHandler,
        SegmentInputs,
        coverage_schema,
        resolve,
    )
    from beam_seg.models import catalog, registry
    from beam_seg.pipeline import transforms

    assert SegmentInputs is transforms.SegmentInputs and resolve is registry.resolve
    assert REGISTRY is catalog.REGISTRY and beam_seg.DEFAULT_MODEL in REGISTRY
    assert issubclass(DeepLabModelHandler, ModelHandler)
    assert coverage_schema(CITYSCAPES) == coverage.schema_for(CITYSCAPES)
    assert "class" in EVENT_SCHEMA.names
    assert all(getattr(beam_seg, name) is not None for name in beam_seg.__all__)
    assert set(beam_seg.__all__) <= set(dir(beam_seg))
    with pytest.raises(AttributeError):
        _ = beam_seg.no_such_name


def test_the_docstring_examples_run():
    for module in (beam_seg, coverage):
        failed, attempted = doctest.testmod(module, verbose=False)
        assert attempted >= 1 and failed == 0, module.__name__


def test_someone_elses_pipeline_segments_with_our_handler_and_writes_its_own_summary(tmp_path):
    # the fake model's rule: class = red // 16
    plain = tmp_path / "plain.png"
    Image.fromarray(np.full((40, 60, 3), (100, 0, 0), np.uint8)).save(plain)  # all class 6
    split = np.zeros((40, 80, 3), np.uint8)
    split[:, :60, 0], split[:, 60:, 0] = 200, 20  # 3/4 class 12, 1/4 class 1
    Image.fromarray(split).save(tmp_path / "split.png")
    to = tmp_path / "shares.csv"
    example = _example()
    handler = FakeHandler("fake", "cityscapes", 1, interpreters=1)
    with TestPipeline() as p:
        example.build(p, sorted(str(f) for f in tmp_path.glob("*.png")), handler, CITYSCAPES.names,
                      str(to))
    rows = list(csv.DictReader(to.open()))
    assert [(r["top_class"], float(r["share"])) for r in rows] == [
        (CITYSCAPES.names[100 // 16], 1.0), (CITYSCAPES.names[200 // 16], 0.75)]
    assert [r["image"] for r in rows] == [str(plain), str(tmp_path / "split.png")]


@pytest.mark.real_model
def test_the_example_runs_as_documented_with_the_default_model(tmp_path):
    to = tmp_path / "shares.csv"
    still = DATA / "images" / "dashcam" / "lanes_solidWhiteCurve.jpg"
    subprocess.run([sys.executable, str(EXAMPLE), str(still), "--to", str(to)], cwd=ROOT,
                   check=True, capture_output=True)
    (row,) = list(csv.DictReader(to.open()))
    assert row["image"] == str(still) and row["top_class"] in CITYSCAPES.names
    assert 0.2 < float(row["share"]) <= 1
