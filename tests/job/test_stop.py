"""Fast tier: the pieces a stop is made of (issue 23): no write after `stop_writes`, the
run's scratch folders, ffmpeg children in their own process groups, a killed child's reason."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

from beam_seg import storage
from beam_seg.media import ffmpeg
from beam_seg.storage import gate


def test_no_write_starts_after_a_stop_but_the_stopping_thread_can_still_write(tmp_path, monkeypatch):
    monkeypatch.setattr(gate, "_stopped_by", None)
    assert storage.stop_writes(1.0)
    try:
        late = tmp_path / "late.json"
        writer = threading.Thread(target=storage.write_bytes, args=(str(late), b"x"), daemon=True)
        writer.start()
        writer.join(0.5)
        assert writer.is_alive() and not late.exists()  # waits for the process to exit
        storage.write_bytes(str(tmp_path / "own.json"), b"x")  # the stopping thread: lock release
        assert (tmp_path / "own.json").read_bytes() == b"x"
    finally:
        monkeypatch.setattr(gate, "_stopped_by", threading.get_ident())  # the writer stays blocked


def test_a_stop_waits_for_the_write_in_flight(tmp_path, monkeypatch):
    monkeypatch.setattr(gate, "_stopped_by", None)
    entered, release = threading.Event(), threading.Event()

    def slow_write():
        with storage.atomic_path(str(tmp_path / "slow.png")) as tmp:
            open(tmp, "wb").close()
            entered.set()
            release.wait(5)

    writer = threading.Thread(target=slow_write, daemon=True)
    writer.start()
    entered.wait(5)
    assert not storage.stop_writes(0.2)  # still in flight
    release.set()
    assert storage.stop_writes(5.0) and (tmp_path / "slow.png").exists()
    monkeypatch.setattr(gate, "_stopped_by", None)


def test_scratch_folders_are_removed_by_a_stop(monkeypatch):
    monkeypatch.setattr(gate, "_scratch", set())
    scratch = storage.ScratchDir("beam_seg_test_")
    assert os.path.isdir(scratch.name)
    storage.remove_scratch()
    assert not os.path.exists(scratch.name) and not gate._scratch
    done = storage.ScratchDir("beam_seg_test_")
    done.cleanup()
    assert not gate._scratch


def test_ffmpeg_children_have_their_own_process_group_and_are_killed_on_a_stop():
    proc = ffmpeg.popen([ffmpeg.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
                         "-i", "testsrc=size=64x48:rate=25", "-f", "null", "-"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
        ffmpeg.kill_children()
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_child_killed_by_a_signal_says_so_rather_than_giving_no_reason():
    assert ffmpeg.exit_reason(-signal.SIGINT, "") == "ffmpeg was killed by SIGINT (not by beam-seg)"
    assert ffmpeg.exit_reason(1, "x\nInvalid data found\n") == "Invalid data found"
    assert ffmpeg.exit_reason(1, "") == "ffmpeg gave no reason"
    started = time.monotonic()
    result = ffmpeg.run(["-f", "lavfi", "-i", "nullsrc", "-t", "0.1", "-f", "null", "-"], timeout=30)
    assert result.returncode == 0 and time.monotonic() - started < 30


def test_a_scratch_folder_written_into_while_it_is_removed_goes_all_the_same(monkeypatch):
    """A worker thread may write a progress file into a scratch folder while a stop removes
    it: the folder must still go (rmtree alone left it when a file appeared behind it)."""
    monkeypatch.setattr(gate, "_scratch", set())
    scratch = storage.ScratchDir("beam_seg_test_")
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            try:
                with open(os.path.join(scratch.name, f"{i}.count"), "w") as f:
                    f.write("1 1\n")
            except OSError:
                pass
            i += 1

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)  # the folder fills up
    try:
        storage.remove_scratch()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not os.path.exists(scratch.name) and not os.path.exists(scratch.name + ".removed")
