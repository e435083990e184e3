"""Run the real pipeline (DirectRunner) and read back what it wrote."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np

from beam_seg.media.render import read_label_png
from pipelines.segment import run


def segment(inputs: list, out: Path, *args: str) -> int:
    return run([*map(str, inputs), "--output", str(out), *args], save_main_session=False)


def coverage(out: Path) -> list[dict]:
    rel = duckdb.sql(f"SELECT * FROM read_parquet('{out}/coverage/*/*.parquet') "
                     "ORDER BY source_uri, frame_index")
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def label_maps(out: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(out)): read_label_png(p.read_bytes())
            for p in sorted((out / "labels").rglob("*.png"))}


def files_of(out: Path) -> dict[str, bytes]:
    """Every file under an output root, by relative path (empty folders do not count)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def assert_same_outputs(out: Path, reference: Path) -> None:
    got, want = files_of(out), files_of(reference)
    assert sorted(got) == sorted(want)
    differing = [name for name in want if got[name] != want[name]]
    assert not differing, f"{len(differing)} files differ from a clean run, e.g. {differing[:5]}"
