"""A run touches only what it made, and reads only what it was given: the leftover sweep,
output roots with glob characters, symlinked and non-regular inputs (issue 23)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from beam_seg import naming

from pipeline_helpers import segment


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


def test_an_output_root_with_glob_characters_is_a_literal_folder(tiny_model, tmp_path):
    stills = [_still(tmp_path / "in" / f"s{i}.png", (40 * i, 200, 10)) for i in range(2)]
    victim = tmp_path / "out_victim_y"
    assert segment(stills, victim, *tiny_model) == 0
    before = sorted(p.relative_to(victim) for p in victim.rglob("*"))
    for name in ("out*y", "out[2]", "out?y"):
        out = tmp_path / name
        assert segment(stills, out, *tiny_model) == 0, name
        assert len(list((out / "_done").iterdir())) == 2, name  # not "already done"
        assert not (out / ".beam_seg_write_check").exists()
        assert segment(stills, out, *tiny_model, "--overwrite") == 0, name
    assert sorted(p.relative_to(victim) for p in victim.rglob("*")) == before
    marker = json.loads((victim / "_done" / f"{naming.input_id(str(stills[0]))}.json").read_text())
    assert marker["frames"] == 1
