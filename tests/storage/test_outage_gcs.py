"""A storage outage mid-run, against a real GCS emulator that is stopped and started again:
the run ends within its --storage-deadline with one line and exit 4, and a plain re-run
afterwards ends byte-identical to a clean run. Also the output lock on a bucket."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from beam_seg import storage
from beam_seg.job.exits import UsageError
from beam_seg.job.lock import OutputLock
from beam_seg.storage.limits import DEFAULT_DEADLINE_S

import gcs_emulator
from conftest import ROOT, make_index_video
from pipeline_helpers import segment

pytestmark = pytest.mark.real_model  # the second tier: runs the real model

FAST = ("--quality", "fast", "--segment-frames", "10")


def _tree(prefix: str) -> dict[str, bytes]:
    """Every object under a gs:// prefix, by name below it."""
    base = prefix.rstrip("/") + "/"
    return {uri[len(base):]: storage.read_bytes(uri) for uri in storage.list_files(base + "**")}


def test_an_emulator_stopped_mid_run_fails_fast_and_a_rerun_completes(tmp_path):
    clip = make_index_video(tmp_path / "clip.mp4", 60, width=320, height=192)
    with gcs_emulator.restartable(tmp_path / "gcs") as server:
        bucket = server.emulator
        source = bucket.upload(clip, bucket.uri("in", "clip.mp4"))
        reference, out = bucket.uri("reference"), bucket.uri("out")
        assert segment([source], reference, *FAST) == 0

        run = subprocess.Popen([sys.executable, "-m", "beam_seg.cli", "segment", source, "--output",
                                out, *FAST, "--storage-deadline", "5"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while not storage.list_files(out + "/_work/**.json"):
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.2)
        server.stop()
        stopped = time.monotonic()
        _, stderr = run.communicate(timeout=300)
        took = time.monotonic() - stopped
        assert run.returncode == 4, stderr[-3000:]
        assert "Traceback" not in stderr, stderr[-3000:]
        (line,) = [x for x in stderr.splitlines() if x.startswith("beam-seg: error:")]
        assert f"cannot write to {out}" in line, line
        assert took < 60, f"the run took {took:.0f} s to give up with a 5 s storage deadline"

        server.start()
        storage.reset_outage()
        assert segment([source], out, *FAST) == 0  # takes the dead run's lock over, resumes
        assert _tree(out) == _tree(reference)


def test_the_lock_on_a_bucket_is_exclusive_and_names_its_holder(tmp_path):
    with gcs_emulator.running(tmp_path / "gcs") as bucket:
        root = bucket.uri("out")
        first = OutputLock(root)
        first.acquire()
        try:
            holder = json.loads(storage.read_bytes(root + "/_lock.json"))
            assert holder["pid"] == first.holder.pid and holder["host"] == first.holder.host
            with pytest.raises(UsageError, match="another run is writing to"):
                OutputLock(root).acquire()
        finally:
            first.release()
        assert not storage.exists(root + "/_lock.json")
        # a lock from another host whose lease ran out is taken over
        stale = {**json.loads(first._record()), "host": "elsewhere", "token": "old",
                 "expires": time.time() - 1}
        storage.write_bytes(root + "/_lock.json", json.dumps(stale).encode())
        second = OutputLock(root)
        second.acquire()
        assert json.loads(storage.read_bytes(root + "/_lock.json"))["token"] == second.holder.token
        second.release()
        # ... and one whose lease still runs is not
        storage.write_bytes(root + "/_lock.json", json.dumps({**stale, "expires": time.time() + 60}).encode())
        with pytest.raises(UsageError, match=r"pid .* on elsewhere"):
            OutputLock(root).acquire()


def _race_for_the_lock(root: str, runs: int = 6) -> list[OutputLock]:
    """`runs` launchers taking the lock at the same instant; the ones that got it."""
    import threading

    start = threading.Barrier(runs)
    won: list[OutputLock] = []

    def take() -> None:
        lock = OutputLock(root)
        start.wait()
        try:
            lock.acquire()
            won.append(lock)
        except UsageError:
            pass

    threads = [threading.Thread(target=take) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won


def test_of_runs_started_together_exactly_one_gets_the_lock(tmp_path):
    with gcs_emulator.running(tmp_path / "gcs") as bucket:
        won = _race_for_the_lock(bucket.uri("out"))
        assert len(won) == 1
        won[0].release()
    won = _race_for_the_lock(str(tmp_path / "local-out"))
    assert len(won) == 1
    won[0].release()


def test_a_stale_lock_is_removed_only_if_it_is_still_the_version_judged(tmp_path):
    """Two runs taking over one stale lock: the second one's delete must not remove the lock
    the first one has just created in its place."""
    with gcs_emulator.running(tmp_path / "gcs") as bucket:
        uri = bucket.uri("out", "_lock.json")
        assert storage.create_exclusive(uri, b"stale")
        assert not storage.create_exclusive(uri, b"second")
        _, judged = storage.read_versioned(uri)
        storage.write_bytes(uri, b"the first taker's lock")  # a new generation
        assert not storage.delete_if_version(uri, judged)
        assert storage.read_bytes(uri) == b"the first taker's lock"
        _, current = storage.read_versioned(uri)
        assert storage.delete_if_version(uri, current) and not storage.exists(uri)
    local = tmp_path / "local" / "_lock.json"
    assert storage.create_exclusive(str(local), b"stale")
    _, judged = storage.read_versioned(str(local))
    time.sleep(0.01)
    storage.write_bytes(str(local), b"the first taker's lock")
    assert not storage.delete_if_version(str(local), judged)
    assert local.read_bytes() == b"the first taker's lock"


@pytest.mark.serial  # wall-clock deadlines
def test_storage_calls_give_up_within_the_deadline(tmp_path):
    """With the store gone a call fails in about the deadline (the GCS client alone retries
    for two minutes), and later calls of the process fail at once."""
    with gcs_emulator.restartable(tmp_path / "gcs") as server:
        uri = server.emulator.uri("x")
        storage.write_bytes(uri, b"x")
        server.stop()
        storage.reset_outage()
        storage.set_deadline(3)
        try:
            started = time.monotonic()
            with pytest.raises(storage.StorageUnavailable):
                storage.read_bytes(uri)
            assert time.monotonic() - started < 10
            started = time.monotonic()
            with pytest.raises(storage.StorageUnavailable, match="storage unavailable"):
                storage.write_bytes(uri, b"y")
            assert time.monotonic() - started < 0.5
            assert storage.outage() is not None
        finally:
            storage.set_deadline(DEFAULT_DEADLINE_S)
            storage.reset_outage()


def test_local_lock_takeover_and_refusal(tmp_path):
    root = str(tmp_path / "out")
    lock = OutputLock(root)
    lock.acquire()
    try:
        with pytest.raises(UsageError, match=r"another run is writing to .*pid \d+ on "):
            OutputLock(root).acquire()
    finally:
        lock.release()
    # a lock of a process that is gone (a pid that exited) is taken over
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = {**json.loads(lock._record()), "pid": dead.pid, "token": "old", "process_start": None}
    Path(root, "_lock.json").write_text(json.dumps(stale))
    again = OutputLock(root)
    again.acquire()
    assert json.loads(Path(root, "_lock.json").read_text())["token"] == again.holder.token
    again.release()
    assert not Path(root, "_lock.json").exists()


@pytest.mark.serial  # wall-clock deadlines
def test_the_lock_is_renewed_while_the_run_lives_and_only_while_it_is_ours(tmp_path, monkeypatch):
    from beam_seg.job import lock as lock_module

    monkeypatch.setattr(lock_module, "REFRESH_S", 0.2)
    with gcs_emulator.running(tmp_path / "gcs") as bucket:
        root = bucket.uri("out")
        held = OutputLock(root)
        held.acquire()
        first = json.loads(storage.read_bytes(root + "/_lock.json"))["expires"]
        time.sleep(1.0)
        renewed = json.loads(storage.read_bytes(root + "/_lock.json"))
        assert renewed["expires"] > first and renewed["token"] == held.holder.token
        # another run took it over (e.g. after a long stall): the renewal stops, nothing is
        # overwritten, and the other run's lock stays
        storage.write_bytes(root + "/_lock.json", json.dumps({**renewed, "token": "other"}).encode())
        time.sleep(1.0)
        assert json.loads(storage.read_bytes(root + "/_lock.json"))["token"] == "other"
        held.release()  # not ours: left alone
        assert json.loads(storage.read_bytes(root + "/_lock.json"))["token"] == "other"
