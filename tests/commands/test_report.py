"""`beam-seg report` and the ready SQL of docs/analytics.md, on real pipeline output."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from beam_seg import naming
from beam_seg.commands import queries, table
from beam_seg.labels import CITYSCAPES
from beam_seg.media import video
from beam_seg.tables import events, regions
from beam_seg.tables.coverage import schema_for

from browser import keep_screenshot, open_page
from cli_runs import run_in_process
from conftest import DATA, ROOT
from pipeline_helpers import segment

UDACITY = DATA / "videos" / "udacity_solidWhiteRight.mp4"
AACHEN_SEQ = DATA / "videos" / "cityscapes_aachen_seq0001_512x256_17fps.mp4"
# pedestrians cover 0.66% of it (ground truth); no dashcam still here has any (the
# "pedestrian" once seen in vehicle_test2.jpg was the model calling a sunlit hill person)
PEOPLE = DATA / "cityscapes" / "train" / "aachen" / "aachen_000004_000019_leftImg8bit.png"
LANES = DATA / "images" / "dashcam" / "lanes_solidWhiteCurve.jpg"
AHEAD = DATA / "images" / "dashcam" / "vehicle_test3.jpg"  # a car ahead in the right lane
INPUTS = [UDACITY, AACHEN_SEQ, PEOPLE, LANES, AHEAD]
VIDEOS = [UDACITY, AACHEN_SEQ]
FRANKFURT_DIR = DATA / "cityscapes" / "val" / "frankfurt"
DOCS = ROOT / "docs" / "analytics.md"
SCREENSHOT_ENV = "BEAM_SEG_SCREENSHOT"  # a path (relative to the repo) to keep the screenshot


def _iid(path: Path) -> str:
    return naming.input_id(str(path))


def _run_command(*argv: str) -> tuple[int, str, str]:
    return run_in_process(*argv)


def _run_report(*argv: str) -> tuple[int, str, str]:
    return _run_command("report", *argv)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two real videos (every 5th frame: 45 + 6 frames) and two stills, default model (the
    stills at balanced too: a third of high's windows)."""
    out = tmp_path_factory.mktemp("report-run")
    assert segment(INPUTS, out, "--every-nth-frame", "5", "--quality", "balanced") == 0
    return out


@pytest.fixture(scope="module")
def reported(run):
    code, stdout, stderr = _run_report(str(run))
    assert code == 0, stderr
    return run, stdout


# --------------------------------------------------------------------------- terminal table


@pytest.mark.real_model
def test_terminal_table_lists_each_input(reported):
    _, stdout = reported
    lines = stdout.splitlines()
    for path in INPUTS:
        (row,) = [line for line in lines if line.startswith(_iid(path) + " ")]
        assert ("video" if path in VIDEOS else "image") in row
    (udacity,) = [line for line in lines if line.startswith(_iid(UDACITY))]
    cells = udacity.split()
    assert cells[1:3] == ["video", "45"]  # 221 frames, every 5th
    minutes, seconds = cells[3].split(":")
    assert 8.5 < 60 * int(minutes) + float(seconds) < 9.5  # the clip lasts 8.84 s
    assert cells[4] == "960x540"
    assert re.search(r"road \d+\.\d%", udacity)  # a highway: road is a top class
    header = next(line for line in lines if line.startswith("input "))
    assert "road" in header and "top classes" in header


# --------------------------------------------------------------------------- plots


def _pixels_of(image: np.ndarray, color) -> int:
    return int(np.all(image[..., :3] == np.asarray(color, np.uint8), axis=-1).sum())


@pytest.mark.real_model
def test_plots_use_the_label_colours(reported):
    out, _ = reported
    names = sorted(p.name for p in (out / "report").iterdir())
    assert names == sorted(["report.html", "legend.png",
                            *[f"coverage_{_iid(v)}.png" for v in VIDEOS]])
    plot = np.asarray(Image.open(out / "report" / f"coverage_{_iid(UDACITY)}.png").convert("RGB"))
    # Road (~36% of each frame) and sky fill large areas of the stacked plot, in their colours.
    road, sky = CITYSCAPES.colors[CITYSCAPES.id_of("road")], CITYSCAPES.colors[CITYSCAPES.id_of("sky")]
    assert _pixels_of(plot, road) > 0.1 * plot.shape[0] * plot.shape[1]
    assert _pixels_of(plot, sky) > 0.1 * plot.shape[0] * plot.shape[1]
    legend = np.asarray(Image.open(out / "report" / "legend.png").convert("RGB"))
    for name, color in zip(CITYSCAPES.names, CITYSCAPES.colors, strict=True):
        assert _pixels_of(legend, color) > 100, name  # a swatch of every class


# --------------------------------------------------------------------------- HTML


class _Links(HTMLParser):
    """Every URL the page loads or links to, and its scripts."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.links: list[tuple[str, str]] = []  # (tag, url) of everything else
        self.scripts: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and "src" in attrs:
            self.images.append(attrs["src"])
        elif tag == "script":
            self.scripts.append(attrs)
        for name in ("src", "href"):
            if name in attrs and tag != "img":
                self.links.append((tag, attrs[name]))


@pytest.mark.real_model
def test_html_report_embeds_its_images_and_links_the_runs_own_files(reported):
    """Opens from a folder with no server: images are embedded, the videos and full-size
    overlays are the run's own files by relative URL, and nothing else is fetched."""
    out, _ = reported
    page = (out / "report" / "report.html").read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(page)
    assert all(not attrs.get("src") for attrs in parser.scripts)  # inline script only
    # the legend + one overlay thumbnail per input (the plots are separate files now)
    assert len(parser.images) == 1 + len(INPUTS)
    for src in parser.images:
        match = re.fullmatch(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)", src)
        assert match, src[:60]
        image = Image.open(io.BytesIO(base64.b64decode(match.group(2))))
        assert image.format == match.group(1).upper() and image.width >= 300
    videos = [url for tag, url in parser.links if tag == "video"]
    assert sorted(videos) == sorted(f"../videos/{_iid(v)}.mp4" for v in VIDEOS)
    overlays = [url for tag, url in parser.links if tag == "a"]
    assert len(overlays) == len(INPUTS)
    for _, url in parser.links:
        assert not re.match(r"[a-z]+:", url), url  # relative: no http, file or data URL
        assert (out / "report" / url).resolve().is_file(), url
    for path in INPUTS:
        assert _iid(path) in page
    assert "<table" in page and "Drives" in page


@pytest.mark.real_model
def test_html_option_sets_the_page_path(run, tmp_path):
    target = tmp_path / "elsewhere" / "summary.html"
    code, stdout, _ = _run_report(str(run), "--html", str(target))
    assert code == 0
    assert target.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert str(target) in stdout
    parser = _Links()
    parser.feed(target.read_text(encoding="utf-8"))
    assert parser.links  # the relative URLs lead from the page's own folder to the run
    for _, url in parser.links:
        assert (target.parent / url).resolve().is_file(), url


@pytest.mark.real_model
def test_the_report_plays_each_drive_in_a_browser(reported, tmp_path):
    """Headless Chromium opens report.html from disk: no console errors, each video loads with
    its file's duration, and a click on its timeline seeks it."""
    out, _ = reported
    with open_page(out / "report" / "report.html", width=1280, height=1000) as (page, errors):
        for number, path in enumerate(sorted(VIDEOS, key=_iid)):
            drive = f"document.querySelectorAll('video')[{number}]"
            page.wait_for_function(f"{drive}.readyState >= 1", timeout=30_000)
            expected = video.probe(str(out / "videos" / f"{_iid(path)}.mp4")).duration_s
            assert page.evaluate(f"{drive}.duration") == pytest.approx(expected, abs=0.05)
            tracks = page.locator(".tracks").nth(number)
            tracks.scroll_into_view_if_needed()
            box = tracks.bounding_box()
            page.mouse.click(box["x"] + 0.75 * box["width"], box["y"] + 30)
            page.wait_for_function(f"!{drive}.seeking && {drive}.readyState >= 2", timeout=30_000)
            assert page.evaluate(f"{drive}.currentTime") == pytest.approx(0.75 * expected, abs=0.25)
        assert not errors, errors
        shot = tmp_path / "report.png"
        highway = page.locator(f"[id='drive-{_iid(UDACITY)}']")
        highway.scroll_into_view_if_needed()
        page.wait_for_timeout(600)  # the player's loading spinner fades out
        highway.screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000
    if keep := os.environ.get(SCREENSHOT_ENV):  # docs/report.png is made this way
        keep_screenshot(shot, ROOT / keep)


# --------------------------------------------------------------------------- regions and events


def _coverage_rows(out: Path, iid: str) -> list[dict]:
    rel = duckdb.sql(f"SELECT * FROM '{out}/coverage/{iid}/*.parquet' ORDER BY frame_index")
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


@pytest.mark.real_model
def test_events_agree_with_the_coverage_table(run):
    """Every frame inside an event is above the exit threshold, the first above the enter
    one, and the frames just outside are at or below exit (defaults: 0.005 / 0.002)."""
    settings = events.EventSettings()
    for path in VIDEOS:
        rows = _coverage_rows(run, _iid(path))
        index = {r["frame_index"]: i for i, r in enumerate(rows)}
        found = pq.read_table(run / "events" / f"{_iid(path)}.parquet").to_pylist()
        for event in found:
            column = f"frac_{event['class']}"
            first, last = index[event["start_frame"]], index[event["end_frame"]]
            inside = [r[column] for r in rows[first:last + 1]]
            assert len(inside) == event["frames"]
            assert inside[0] > settings.enter and min(inside) > settings.exit
            assert max(inside) == event["peak_coverage"]
            if first > 0:  # it starts at the first frame above enter
                assert rows[first - 1][column] <= settings.enter
            if last + 1 < len(rows):
                assert rows[last + 1][column] <= settings.exit
            assert event["end_s"] - event["start_s"] >= settings.min_duration_s
            if event["class"] == "car":
                assert event["peak_count"] == max(r["n_car"] for r in rows[first:last + 1])
    udacity = pq.read_table(run / "events" / f"{_iid(UDACITY)}.parquet").to_pylist()
    assert "car" in {e["class"] for e in udacity}  # cars are in view on the highway
    assert not (run / "events" / f"{_iid(PEOPLE)}.parquet").exists()  # images have no events


@pytest.mark.real_model
def test_the_road_ahead_of_the_highway_clip(run):
    rows = _coverage_rows(run, _iid(UDACITY))
    assert np.median([r["roi_road"] for r in rows]) >= 0.5  # the lane ahead is always in view
    for r in rows:
        assert sum(v for k, v in r.items() if k.startswith("roi_")) == pytest.approx(1)
        assert r["n_car"] >= 0 and (r["n_car"] == 0) == (r["lowest_car"] is None)
        assert 0 <= r["largest_car"] <= r["frac_car"] + 1e-12  # one blob: at most the class


@pytest.mark.real_model
def test_events_command_exports_foxglove_events(run, tmp_path):
    target = tmp_path / "events.jsonl"
    code, _, err = _run_command("events", str(run), "--format", "foxglove", "--class", "car",
                                "--time-origin", "2024-05-01T12:00:00Z", "--to", str(target))
    assert code == 0, err
    messages = [json.loads(line) for line in target.read_text().splitlines()]
    stored = duckdb.sql(f"SELECT * FROM '{run}/events/*.parquet' WHERE class = 'car'").fetchall()
    assert len(messages) == len(stored) > 0
    origin = 1_714_564_800  # 2024-05-01T12:00:00Z
    for message in messages:
        meta = {kv["key"]: kv["value"] for kv in message["metadata"]}
        assert meta["class"] == "car"
        start = message["start_time"]["sec"] + message["start_time"]["nsec"] / 1e9 - origin
        end = message["end_time"]["sec"] + message["end_time"]["nsec"] / 1e9 - origin
        assert 0 <= start <= end
    code, table_out, _ = _run_command("events", str(run))
    every = duckdb.sql(f"SELECT count(*) FROM '{run}/events/*.parquet'").fetchall()[0][0]
    assert code == 0 and f"({every} events)" in table_out


# --------------------------------------------------------------------------- errors


def _one_error_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("beam-seg: error: "), err
    return err


def test_bad_arguments_are_one_line_errors(tmp_path):
    code, _, err = _run_report(str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in _one_error_line(err)
    code, _, err = _run_report(str(tmp_path))
    assert code == 2 and "no coverage files" in _one_error_line(err)
    code, _, err = _run_report()
    assert code == 2 and "OUT" in _one_error_line(err)
    code, _, err = _run_report(str(tmp_path), "--max-plots", "many")
    assert code == 2 and "--max-plots" in _one_error_line(err)


# --------------------------------------------------------------------------- scale


def _write_synthetic_run(out: Path, videos: int, frames: int, images: int) -> None:
    """A coverage table the size of a long run (no label maps or overlays behind it)."""
    schema = schema_for(CITYSCAPES)
    rng = np.random.default_rng(0)

    def rows(iid: str, kind: str, index: np.ndarray) -> pa.Table:
        n = len(index)
        fractions = rng.dirichlet(np.ones(CITYSCAPES.num_classes), size=n)
        roi = rng.dirichlet(np.ones(CITYSCAPES.num_classes), size=n)
        columns = {
            "source_uri": [f"/drives/{iid}.mp4"] * n, "input_id": [iid] * n, "kind": [kind] * n,
            "frame_index": index, "timestamp_s": index / 25.0,
            "width": np.full(n, 1920, np.int32), "height": np.full(n, 1080, np.int32),
            "model": ["cityscapes-edgetpu-slim"] * n, "label_set": ["cityscapes"] * n,
            "label_uri": [f"labels/{iid}/{i:06d}.png" for i in index],
            "overlay_uri": [f"overlays/{iid}/{i:06d}.jpg" for i in index],
            "confidence": rng.random(n), "flicker": rng.random(n) * 0.1,
            **{f"frac_{c}": fractions[:, j] for j, c in enumerate(CITYSCAPES.column_names())},
            "frac_ignore": np.zeros(n),
            **{f"roi_{c}": roi[:, j] for j, c in enumerate(CITYSCAPES.column_names())},
            "roi_ignore": np.zeros(n),
        }
        for cls in regions.OBJECT_CLASSES:
            columns[f"n_{cls}"] = rng.integers(0, 4, n).astype(np.int32)
            columns[f"largest_{cls}"] = np.where(columns[f"n_{cls}"] > 0, rng.random(n) * 0.01, 0.0)
            columns[f"lowest_{cls}"] = pa.array(rng.random(n), mask=columns[f"n_{cls}"] == 0)
        return pa.table(columns, schema=schema)

    for v in range(videos):
        iid = f"drive{v}-0123abcd"
        (out / "coverage" / iid).mkdir(parents=True)
        for s, start in enumerate(range(0, frames, 600)):
            index = np.arange(start, min(frames, start + 600))
            pq.write_table(rows(iid, "video", index), out / "coverage" / iid / f"segment-{s:05d}.parquet")
        events.write_input_events(str(out / "coverage" / iid / "*.parquet"),
                                  str(out / "events" / f"{iid}.parquet"), events.EventSettings())
    for i in range(images):
        iid = f"still{i:04d}-0123abcd"
        (out / "coverage" / iid).mkdir(parents=True)
        pq.write_table(rows(iid, "image", np.zeros(1, np.int64)),
                       out / "coverage" / iid / "segment-00000.parquet")


def test_a_large_run_reports_quickly(tmp_path):
    out = tmp_path / "big"
    _write_synthetic_run(out, videos=3, frames=40_000, images=250)  # 120,250 frames
    started = time.monotonic()
    code, stdout, err = _run_report(str(out))
    elapsed = time.monotonic() - started
    assert code == 0, err
    assert elapsed < 60, elapsed  # ~5 s here: everything is aggregated in DuckDB
    drive = next(line for line in stdout.splitlines() if line.startswith("drive0-0123abcd "))
    assert drive.split()[1:5] == ["video", "40000", "26:40.0", "1920x1080"]
    assert "... and 53 more inputs" in stdout  # 253 inputs, the first 200 listed
    with table.open_coverage(str(out)) as cov:
        series = queries.coverage_over_time(cov, ["drive1-0123abcd"])["drive1-0123abcd"]
    assert len(series.times_s) == queries.TIME_BUCKETS  # 40,000 frames drawn as 300 points
    assert all(abs(v.mean() - 1 / 19) < 0.01 for v in series.fractions.values() if v.any())


# --------------------------------------------------------------------------- docs/analytics.md


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", DOCS.read_text(encoding="utf-8"), re.S | re.M)


def _title(block: str) -> str:
    first = block.splitlines()[0]
    assert first.startswith("-- "), first
    return first[3:]


@pytest.mark.real_model
def test_docs_duckdb_queries_run_on_a_real_output(run):
    queries = {_title(b): b.replace("'out/", f"'{run}/") for b in _blocks("sql")}
    assert len(queries) >= 4
    con = duckdb.connect()
    results = {}
    for title, sql in queries.items():
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description]
        results[title] = [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
        assert results[title], title

    per_minute = results["road coverage per minute of each drive"]
    assert {(r["input_id"], r["minute"], r["frames"]) for r in per_minute} == \
        {(_iid(UDACITY), 0, 45), (_iid(AACHEN_SEQ), 0, 6)}
    assert all(0.1 < r["road"] < 0.9 for r in per_minute)

    people = results["frames where person covers more than 0.5%"]
    assert all(r["person"] > 0.005 for r in people)
    assert _iid(PEOPLE) in {r["input_id"] for r in people}

    top = results["top classes per input"]
    assert len(top) == 3 * len(INPUTS)
    for path in INPUTS:
        mine = [r for r in top if r["input_id"] == _iid(path)]
        assert [r["coverage"] for r in mine] == sorted((r["coverage"] for r in mine), reverse=True)
        assert {r["class"] for r in mine} <= set(CITYSCAPES.column_names())
    assert ("road" in {r["class"] for r in top if r["input_id"] == _iid(UDACITY)})

    busiest = results["busiest vehicle frames per input"]
    assert len([r for r in busiest if r["input_id"] == _iid(UDACITY)]) == 5
    assert all(0 <= r["vehicles"] <= 1 and (run / r["overlay_uri"]).is_file() for r in busiest)

    mix = results["pixel-weighted class mix of the run"]
    assert sum(r["percent"] for r in mix) == pytest.approx(100, abs=0.1)


def test_docs_have_a_bigquery_version_of_every_query():
    duck = {_title(b) for b in _blocks("sql")}
    bigquery = _blocks("bigquery")
    assert any("CREATE OR REPLACE EXTERNAL TABLE" in b and "format = 'PARQUET'" in b for b in bigquery)
    assert duck <= {_title(b) for b in bigquery if b.startswith("--")}
    for block in bigquery:
        assert "'out/" not in block and "COLUMNS(" not in block  # DuckDB-only syntax


# --------------------------------------------------------------------------- gs://


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gcs_bucket(monkeypatch):
    """An in-memory Cloud Storage emulator that Beam's FileSystems talks to, anonymously."""
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    if not exe.exists():
        pytest.skip("gcp-storage-emulator is not installed")
    port = _free_port()
    proc = subprocess.Popen([str(exe), "start", "--host=127.0.0.1", f"--port={port}", "--in-memory",
                             "--default-bucket=report-test"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            assert time.monotonic() < deadline, "the storage emulator did not start"
            time.sleep(0.1)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        # No credential lookup (it would probe the GCE metadata server for ~25 s): anonymous.
        from apache_beam.internal.gcp import auth

        monkeypatch.setattr(auth._Credentials, "_credentials_init", True)
        monkeypatch.setattr(auth._Credentials, "_credentials", None)
        yield "gs://report-test"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.real_model
def test_report_and_eval_read_a_gcs_output(gcs_bucket, tmp_path):
    from beam_seg import storage
    from beam_seg.commands.evaluate import evaluate

    local = tmp_path / "out"
    image = FRANKFURT_DIR / "frankfurt_000000_000294_leftImg8bit.png"
    assert segment([image], local) == 0
    remote = f"{gcs_bucket}/runs/frankfurt"
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        storage.upload_file(str(path), f"{remote}/{path.relative_to(local)}")

    code, stdout, err = _run_report(remote)
    assert code == 0, err
    assert _iid(image) in stdout
    page = storage.read_bytes(f"{remote}/report/report.html").decode("utf-8")
    assert _iid(image) in page and "data:image/jpeg;base64," in page  # the overlay was read
    assert storage.exists(f"{remote}/report/legend.png")

    remote_scores = evaluate(remote, str(FRANKFURT_DIR))
    assert remote_scores == evaluate(str(local), str(FRANKFURT_DIR))
    assert remote_scores["frames"] == 1


def test_the_report_lists_failed_inputs_with_their_cause(tiny_model, tmp_path):
    """Inputs that failed have no coverage rows; the report still names them, with the cause
    from their error records, on the terminal and on the page (escaped: a file name is not
    markup), and forgets them once a re-run finishes them."""
    sources = tmp_path / "in"
    sources.mkdir()
    good = sources / "street.jpg"
    Image.open(DATA / "images" / "dashcam" / "vehicle_test1.jpg").save(good)
    hostile = sources / "<img src=x onerror=alert(1)>.jpg"
    hostile.write_text("not an image")
    out = tmp_path / "out"
    assert segment([good, hostile], out, *tiny_model, "--quality", "fast") == 3
    code, text, _ = run_in_process("report", out)
    assert code == 0
    assert f"failed: {hostile}: decode: ValueError: not a readable image" in text
    page = (out / "report" / "report.html").read_text(encoding="utf-8")
    assert "<h2>Failed inputs</h2>" in page and "1 failed &middot;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page
    assert "not a readable image" in page

    hostile.unlink()  # the file mended: a re-run finishes it and its error record goes
    Image.open(DATA / "images" / "dashcam" / "vehicle_test1.jpg").save(hostile)
    assert segment([good, hostile], out, *tiny_model, "--quality", "fast") == 0
    code, text, _ = run_in_process("report", out)
    assert "failed: " not in text and "error records in" not in text
    assert "Failed inputs" not in (out / "report" / "report.html").read_text(encoding="utf-8")
