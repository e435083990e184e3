"""`make bench`: the pipeline's speed against the bare model and a plain sequential loop.

Everything is measured in one run on one machine, and each figure is the median of
`--repeats` runs. Steady state is the marginal rate between a clip and the same clip three
times over, so start-up (imports, model load, pipeline construction) cancels out.

    python benchmarks/bench.py --out bench-out [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from fractions import Fraction
from pathlib import Path

import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from beam_seg.job.runner import InferenceLayout, choose_layout, tune_direct_runner  # noqa: E402
from beam_seg.labels import CITYSCAPES  # noqa: E402
from beam_seg.media import render, video  # noqa: E402
from beam_seg.models import DEFAULT_MODEL, load_model, resolve  # noqa: E402
from beam_seg.models.loaders import default_threads  # noqa: E402
from beam_seg.models.placement import Placement, fit_to_input  # noqa: E402
from beam_seg.models.scoring import labels_from_output  # noqa: E402
from beam_seg.tables import coverage, regions  # noqa: E402

SHARED = Path(os.environ.get("BEAM_SEG_SHARED", ROOT.parent / "shared"))
UDACITY = SHARED / "data" / "videos" / "udacity_solidWhiteRight.mp4"

# Runs the pipeline in a fresh process and reports its own peak RSS (VmHWM).
PIPELINE = """
import json, re, resource, sys, time
from pipelines.segment import run
def cpu():
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))
start, cpu_start = time.perf_counter(), cpu()
code = run(sys.argv[1:], save_main_session=False)
seconds, cpu_seconds = time.perf_counter() - start, cpu() - cpu_start
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"code": code, "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mib": hwm / 1024}))
"""


def ffmpeg(*args: str) -> None:
    subprocess.run([video.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def prepare_clips(work: Path) -> dict[str, tuple[Path, Path]]:
    """(clip, clip three times over) for the real dashcam video and a 1080p synthetic one."""
    work.mkdir(parents=True, exist_ok=True)
    clips = {}
    listing = work / "udacity_x3.txt"
    listing.write_text("".join(f"file '{UDACITY}'\n" for _ in range(3)))
    ffmpeg("-i", str(UDACITY), "-map", "0:V:0", "-c", "copy", str(work / "udacity_x1.mp4"))
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-map", "0:V:0", "-c", "copy",
           str(work / "udacity_x3.mp4"))
    clips["udacity_960x540"] = (work / "udacity_x1.mp4", work / "udacity_x3.mp4")
    for n, name in ((75, "x1"), (225, "x3")):
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=25", "-frames:v", str(n),
               "-c:v", "libx264", "-pix_fmt", "yuv420p", str(work / f"synthetic1080_{name}.mp4"))
    clips["synthetic_1920x1080"] = (work / "synthetic1080_x1.mp4", work / "synthetic1080_x3.mp4")
    return clips


def first_frames(path: Path, count: int) -> list[np.ndarray]:
    info = video.probe(str(path))
    seg = video.plan_segments(info, count)[0]
    return [f.copy() for f in video.decode_frames(str(path), info, seg)]


def bare_model_rate(model, frames: list[np.ndarray], callers: int = 1) -> float:
    """Inferences per second on frames already decoded and resized: the model alone,
    called from `callers` threads at once (one per interpreter of a pooled model)."""
    spec = model.input_spec
    inputs = [spec.encode(fit_to_input(f, spec)[0])[None] for f in frames]
    model.predict(inputs[0])

    def infer_all() -> None:
        for x in inputs:
            model.predict(x)

    threads = [threading.Thread(target=infer_all) for _ in range(callers)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return callers * len(inputs) / (time.perf_counter() - start)


def record_bare_rates(runs: dict[str, list[float]], model, pooled, callers: int,
                      frames: list[np.ndarray]) -> None:
    """The model's best rate here, whichever way it runs: one interpreter on every core,
    or the pipeline's interpreters side by side. Taken around every timed run: on a noisy
    machine one reading can be far off, and the median of several brackets the runs."""
    one = bare_model_rate(model, frames)
    pool = bare_model_rate(pooled, frames, callers)
    runs["bare_fps_one_interpreter"].append(one)
    runs["bare_fps_pipeline_layout"].append(pool)
    runs["bare_fps"].append(max(one, pool))


def pipeline_layout() -> InferenceLayout:
    """The interpreters and threads the pipeline picks by default on this machine."""
    options = PipelineOptions([])
    tune_direct_runner(options, [])
    return choose_layout(options, None, None)


def run_pipeline(clip: Path, out: Path, extra: list[str]) -> dict:
    result = subprocess.run([sys.executable, "-c", PIPELINE, str(clip), "--output", str(out), *extra],
                            cwd=ROOT, capture_output=True, text=True, check=False)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report["code"] != 0:
        raise RuntimeError(f"pipeline failed on {clip}: {result.stderr[-2000:]}")
    return report


VIDEO_RUNS = {  # the default video run (balanced, key frames) against every frame in full
    "default": [],
    "balanced --keyframes 1": ["--quality", "balanced", "--keyframes", "1"],
    "fast": ["--quality", "fast"],
}


def video_default_rows(clip: Path, scratch: Path, args) -> dict:
    """Whole-pipeline frames/s of the default video run, `balanced --keyframes 1` and `fast`
    on one clip, interleaved `repeats` times in one run; medians, and the default's cost
    as a share of `balanced --keyframes 1`'s."""
    frames = video.probe(str(clip)).frame_count
    seconds, cpu = {name: [] for name in VIDEO_RUNS}, {name: [] for name in VIDEO_RUNS}
    for repeat in range(args.repeats):
        for name, flags in VIDEO_RUNS.items():
            out = scratch / f"video-defaults-{repeat}-{name.replace(' ', '_')}"
            report = run_pipeline(clip, out, ["--model", args.model, "--overwrite", *flags])
            seconds[name].append(report["seconds"])
            cpu[name].append(report["cpu_seconds"])
    rows = {name: {"frames_per_s": round(frames / median(s), 2), "seconds": [round(x, 1) for x in s],
                   "cpu_seconds": [round(x, 1) for x in cpu[name]]}
            for name, s in seconds.items()}
    # wall time is what a laptop user waits; CPU seconds (the process and its ffmpeg children)
    # are what a Dataflow bill counts, and move less with the machine's load
    rows["default_cost_vs_balanced_keyframes_1"] = round(
        median(seconds["default"]) / median(seconds["balanced --keyframes 1"]), 3)
    rows["default_cpu_vs_balanced_keyframes_1"] = round(
        median(cpu["default"]) / median(cpu["balanced --keyframes 1"]), 3)
    print(f"[video defaults] {rows}", file=sys.stderr, flush=True)
    return rows


def sequential_loop(clip: Path, out: Path, model) -> float:
    """The plain notebook loop we compete with: decode, infer, write PNG, JPEG and mp4, in turn.

    Written the way such scripts usually are: imageio-ffmpeg's reader and writer with
    their defaults, Pillow's default PNG compression, overlay arithmetic in float.
    """
    import imageio_ffmpeg

    out.mkdir(parents=True)
    start = time.perf_counter()
    reader = imageio_ffmpeg.read_frames(str(clip))
    meta = next(reader)
    width, height = meta["size"]
    writer = imageio_ffmpeg.write_frames(str(out / "out.mp4"), (width, height), fps=meta["fps"],
                                         macro_block_size=1)
    writer.send(None)
    spec = model.input_spec
    for index, raw in enumerate(reader):
        rgb = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
        x = np.asarray(Image.fromarray(rgb).resize((spec.width, spec.height), Image.BILINEAR))
        ids = labels_from_output(model.predict(spec.encode(x)[None])[0], model.describe(),
                                 Placement(0, 0, spec.width, spec.height), spec.width, spec.height,
                                 width, height)
        Image.fromarray(ids).save(out / f"{index:06d}.png")
        blended = (rgb * 0.5 + CITYSCAPES.palette[ids] * 0.5).astype(np.uint8)
        Image.fromarray(blended).save(out / f"{index:06d}.jpg", quality=90)
        writer.send(blended)
    writer.close()
    return time.perf_counter() - start


def stage_times(model, frames: list[np.ndarray], clip: Path) -> dict[str, float]:
    """Milliseconds per frame of each stage, each timed on its own over the same frames."""
    spec = model.input_spec
    timings: dict[str, float] = {}

    def timed(name: str, fn, items):
        start = time.perf_counter()
        results = [fn(item) for item in items]
        timings[name] = round((time.perf_counter() - start) / len(items) * 1000, 2)
        return results

    info = video.probe(str(clip))
    seg = video.plan_segments(info, len(frames))[0]
    start = time.perf_counter()
    decoded = sum(1 for _ in video.decode_frames(str(clip), info, seg))
    timings["decode"] = round((time.perf_counter() - start) / decoded * 1000, 2)
    prepared = timed("preprocess", lambda f: spec.encode(fit_to_input(f, spec)[0])[None], frames)
    outputs = timed("inference", model.predict, prepared)
    height, width = frames[0].shape[:2]
    placement = fit_to_input(frames[0], spec)[1]
    info = model.describe()
    labels = timed("postprocess", lambda o: labels_from_output(
        o[0], info, placement, spec.width, spec.height, width, height), outputs)
    timed("label_png", lambda ids: render.label_png_bytes(ids, CITYSCAPES), labels)
    overlays = timed("overlay", lambda pair: render.overlay(pair[0], pair[1], CITYSCAPES.palette, 0.5),
                     list(zip(frames, labels, strict=True)))
    timed("overlay_jpeg", lambda o: render.encode_image(o, "jpg"), overlays)
    counts = timed("class_counts", lambda ids: coverage.class_counts(ids, 19), labels)
    region_columns = timed("regions", lambda pair: regions.region_values(
        pair[0], pair[1], CITYSCAPES, regions.RegionSettings()), list(zip(labels, counts, strict=True)))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with video.VideoWriter(os.path.join(tmp, "v.mp4"), width, height, Fraction(25)) as writer:
            for blended in overlays:
                writer.write(blended)
        timings["video_encode"] = round((time.perf_counter() - start) / len(overlays) * 1000, 2)
    rows = [coverage.coverage_row({}, c, CITYSCAPES, r) for c, r in zip(counts, region_columns, strict=True)]
    start = time.perf_counter()
    buf = io.BytesIO()
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(rows), buf)
    timings["parquet"] = round((time.perf_counter() - start) / len(rows) * 1000, 3)
    return timings


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-out", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clips", default="udacity_960x540,synthetic_1920x1080",
                        help="comma-separated subset of the clips to run")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--pipeline-args", default="", help="extra options for beam-seg segment")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip (video_defaults)")
    args = parser.parse_args(argv)
    threads = default_threads()
    layout = pipeline_layout()
    resolved = resolve(args.model)
    model = load_model(resolved, threads)  # one interpreter on every core, as a plain loop has
    pooled = load_model(resolved, layout.threads, layout.interpreters)  # the pipeline's own layout
    clips = prepare_clips(args.out / "clips")
    # Every run writes to a fresh directory, all removed at the end: on ext4 without a
    # journal, creating files right after deleting thousands scans past the recently
    # freed inodes (~0.5 ms a frame here), a cost no user's first run into a new
    # directory pays.
    scratch = args.out / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    extra = ["--model", args.model, "--quality", "fast", "--overwrite", *args.pipeline_args.split()]
    results: dict = {
        "date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}",
        "model": args.model, "one_interpreter_threads": threads,
        "pipeline_layout": {"interpreters": layout.interpreters, "threads": layout.threads},
        "repeats": args.repeats, "command": "make bench", "clips": {},
    }
    for name, (x1, x3) in clips.items():
        if name not in args.clips.split(","):
            continue
        n1, n3 = video.probe(str(x1)).frame_count, video.probe(str(x3)).frame_count
        frames = first_frames(x1, 40)
        runs: dict[str, list[float]] = {k: [] for k in (
            "bare_fps", "bare_fps_one_interpreter", "bare_fps_pipeline_layout",
            "pipeline_fps_marginal", "pipeline_fps_end_to_end", "sequential_fps_marginal",
            "peak_rss_mib_x1", "peak_rss_mib_x3")}

        stages = []
        for repeat in range(args.repeats):
            print(f"[{name}] repeat {repeat + 1}/{args.repeats}", file=sys.stderr, flush=True)
            run_dir = scratch / f"{name}-{repeat}"
            record_bare_rates(runs, model, pooled, layout.interpreters, frames)
            p1 = run_pipeline(x1, run_dir / "pipeline_x1", extra)
            record_bare_rates(runs, model, pooled, layout.interpreters, frames)
            p3 = run_pipeline(x3, run_dir / "pipeline_x3", extra)
            record_bare_rates(runs, model, pooled, layout.interpreters, frames)
            runs["pipeline_fps_marginal"].append((n3 - n1) / (p3["seconds"] - p1["seconds"]))
            runs["pipeline_fps_end_to_end"].append(n3 / p3["seconds"])
            runs["peak_rss_mib_x1"].append(p1["peak_rss_mib"])
            runs["peak_rss_mib_x3"].append(p3["peak_rss_mib"])
            s1 = sequential_loop(x1, run_dir / "sequential_x1", model)
            s3 = sequential_loop(x3, run_dir / "sequential_x3", model)
            runs["sequential_fps_marginal"].append((n3 - n1) / (s3 - s1))
            record_bare_rates(runs, model, pooled, layout.interpreters, frames)
            stages.append(stage_times(model, frames[:20], x1))
        figures = {k: median(v) for k, v in runs.items()}
        figures["pipeline_vs_bare"] = round(figures["pipeline_fps_marginal"] / figures["bare_fps"], 3)
        figures["speedup_vs_sequential"] = round(
            figures["pipeline_fps_marginal"] / figures["sequential_fps_marginal"], 3)
        figures["frames"] = {"x1": n1, "x3": n3}
        figures["stage_ms_per_frame"] = {k: median([s[k] for s in stages]) for k in stages[0]}
        figures["all_runs"] = {k: [round(x, 3) for x in v] for k, v in runs.items()}
        results["clips"][name] = figures
        print(f"[{name}] bare {figures['bare_fps']:.1f}/s (one interpreter "
              f"{figures['bare_fps_one_interpreter']:.1f}, pipeline layout "
              f"{figures['bare_fps_pipeline_layout']:.1f}), "
              f"pipeline {figures['pipeline_fps_marginal']:.1f}/s "
              f"({figures['pipeline_vs_bare']:.2f} of bare), "
              f"sequential {figures['sequential_fps_marginal']:.1f}/s "
              f"(x{figures['speedup_vs_sequential']:.2f}), peak RSS {figures['peak_rss_mib_x1']:.0f} -> "
              f"{figures['peak_rss_mib_x3']:.0f} MiB", flush=True)
    if "udacity_960x540" in clips and "video_defaults" not in args.skip.split(","):
        results["video_defaults"] = video_default_rows(clips["udacity_960x540"][0], scratch, args)
    shutil.rmtree(scratch, ignore_errors=True)
    out_json = args.out / "bench.json"
    out_json.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print(f"\nwritten: {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
