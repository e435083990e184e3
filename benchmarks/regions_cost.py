"""CPU cost per frame of the region and object columns, on a run's own label maps.

    python benchmarks/regions_cost.py OUT

Times, on one core, what the write step does per frame for the coverage row: the class
histogram alone, then the histogram plus `regions.region_values` (the region-of-interest
histogram and the connected components of the object classes). Medians of 5 passes over
every label map of OUT (labels/*/*.png). `make bench` times the same `regions` stage on
its clips; this script measures it on any run, e.g. the udacity clip's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beam_seg.commands.table import open_coverage
from beam_seg.media.render import read_label_png
from beam_seg.tables import coverage, regions


def per_frame_ms(fn, maps: list[np.ndarray], passes: int = 5) -> float:
    runs = []
    for _ in range(passes):
        start = time.process_time()
        for ids in maps:
            fn(ids)
        runs.append((time.process_time() - start) / len(maps) * 1000)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", metavar="OUT", type=Path)
    args = parser.parse_args(argv)
    paths = sorted((args.output / "labels").glob("*/*.png"))
    if not paths:
        parser.error(f"no label maps under {args.output / 'labels'}")
    with open_coverage(str(args.output)) as cov:
        label_set = next(iter(cov.label_sets.values()))
    maps = [read_label_png(p.read_bytes()) for p in paths]
    settings = regions.RegionSettings()
    n = label_set.num_classes
    regions.region_values(maps[0], coverage.class_counts(maps[0], n), label_set, settings)  # mask
    histogram = per_frame_ms(lambda ids: coverage.class_counts(ids, n), maps)
    both = per_frame_ms(lambda ids: regions.region_values(
        ids, coverage.class_counts(ids, n), label_set, settings), maps)
    height, width = maps[0].shape
    print(f"{len(maps)} label maps {width}x{height} ({label_set.name}), CPU ms per frame, "
          f"median of 5 passes:")
    print(f"  class histogram             {histogram:.3f}")
    print(f"  histogram + regions/objects {both:.3f}")
    print(f"  regions/objects alone       {both - histogram:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
