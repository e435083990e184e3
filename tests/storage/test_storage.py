"""The Beam-free file layer: atomic local writes, and no Beam import for local analytics."""

from __future__ import annotations

import subprocess
import sys

import pytest

from beam_seg import storage

from conftest import ROOT


def _leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_atomic_path_replaces_the_file_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "sub" / "table.parquet"
    with storage.atomic_path(str(target)) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"first")
        assert not target.exists()  # nothing at the final name while it is written
    assert target.read_bytes() == b"first"
    with pytest.raises(RuntimeError), storage.atomic_path(str(target)) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("killed midway")
    assert target.read_bytes() == b"first"  # the old file stays whole
    assert _leftovers(target.parent) == []  # and the temporary is gone


def test_atomic_path_builds_directories_too(tmp_path):
    target = tmp_path / "model"
    with storage.atomic_path(str(target)) as tmp:
        (tmp_path / tmp).mkdir()
        (tmp_path / tmp / "saved_model.pb").write_bytes(b"graph")
    assert (target / "saved_model.pb").read_bytes() == b"graph"
    with pytest.raises(OSError), storage.atomic_path(str(tmp_path / "other")) as tmp:
        (tmp_path / tmp).mkdir()
        (tmp_path / tmp / "part").write_bytes(b"x")
        raise OSError("download failed")
    assert not (tmp_path / "other").exists() and _leftovers(tmp_path) == []


def test_local_reads_writes_and_listing(tmp_path):
    uri = "file://" + str(tmp_path / "a" / "x.bin")
    storage.write_bytes(uri, b"data")
    assert storage.read_bytes(str(tmp_path / "a" / "x.bin")) == b"data"
    assert storage.exists(uri) and storage.is_dir(str(tmp_path / "a"))
    storage.download_file(uri, str(tmp_path / "copy.bin"))
    assert (tmp_path / "copy.bin").read_bytes() == b"data"
    assert storage.list_files(str(tmp_path / "a" / "*.bin")) == [str(tmp_path / "a" / "x.bin")]
    storage.delete(uri)
    storage.delete(uri)  # missing is fine
    assert not storage.exists(uri)


def test_local_analytics_do_not_import_beam():
    """`report`, `eval` and `events` on a local output never load Apache Beam (seconds)."""
    code = ("import sys; import beam_seg.commands.report, beam_seg.commands.evaluate, "
            "beam_seg.commands.events_command, beam_seg.storage; "
            "print('apache_beam' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert result.stdout.strip() == "False"


def test_temporary_files_that_a_killed_writer_left_are_removed_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    kept = [out / "labels" / "clip" / "000031.png", out / "coverage" / "clip" / "segment-00000.parquet",
            out / "notes.tmp-later.txt", out / "_lock.json", out / "._lock.json.tmp-0123abcd",
            # user files of the temp shape: at the root, in a folder of theirs, too deep
            out / ".thesis.json.tmp-0badcafe", out / "photos" / ".a.png.tmp-0badcafe",
            out / "labels" / "clip" / "mine" / ".a.png.tmp-0badcafe",
            out / "labels" / "clip" / "notes.txt.tmp-0badcafe"]
    stale = [out / "labels" / "clip" / ".000031.png.tmp-ee40dd7f",
             out / "_done" / ".c.json.tmp-89abcdef", out / "videos" / ".c.mp4.tmp-89abcdef"]
    for path in kept + stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    folders = [out / "videos" / ".clip.mp4.tmp-00aa11bb", out / "notes.tmp-0badcafe"]
    for folder in folders:  # never a directory, whatever its name
        (folder / "thesis.txt").parent.mkdir(parents=True)
        (folder / "thesis.txt").write_text("precious")
    link = out / "coverage" / "clip" / ".x.parquet.tmp-0badcafe"
    link.symlink_to(out / "photos" / ".a.png.tmp-0badcafe")
    assert storage.remove_stale_temps(str(out)) == 3
    assert all(p.exists() for p in kept) and link.is_symlink()
    assert all((f / "thesis.txt").read_text() == "precious" for f in folders)
    assert not any(p.exists() for p in stale)
    assert storage.remove_stale_temps(str(out)) == 0
