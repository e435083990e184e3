"""A Cloud Storage emulator for the tests, and the environment that points Beam at it.

`running()` starts `gcp-storage-emulator` (in memory, one bucket) in a child process on a
free port of 127.0.0.1 and sets, for the duration of the block only:

- `STORAGE_EMULATOR_HOST`: google-cloud-storage (which Beam 2.77's gcsio is built on)
  then sends every request to the emulator, to a URL of its own.
- `GOOGLE_APPLICATION_CREDENTIALS`: a user-credentials file holding a dummy access token
  that never expires. Beam's gcsio asks `google.auth.default()` for credentials before it
  makes a client; without a credentials file that probes the GCE metadata server (a
  non-loopback address) and retries with back-off for ~30 s per process before falling
  back to an anonymous client. With the file it gets credentials at once and never
  refreshes them, so nothing leaves the machine; the emulator ignores the token.
- `GOOGLE_CLOUD_PROJECT`, and `CLOUDSDK_CONFIG` at an empty directory (no developer's
  gcloud login is picked up).

The child exits when its stdin closes, so it also stops if pytest itself is killed, and
after `MAX_SECONDS` whatever happens. While the block runs, every socket connection the
test process makes is checked to be to loopback.

    python tests/gcs_emulator.py BUCKET   # the child: prints its port, serves until stdin closes
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BUCKET = "beam-seg-test"
MAX_SECONDS = 30 * 60
_STARTUP_TIMEOUT_S = 30


@dataclass(frozen=True)
class Emulator:
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str

    def uri(self, *parts: str) -> str:
        return "/".join([f"gs://{self.bucket}", *parts])

    def upload(self, local: Path | str, uri: str) -> str:
        from beam_seg import storage

        storage.upload_file(str(local), uri)
        return uri


def client_environment(endpoint: str, scratch: Path) -> dict[str, str]:
    """Environment variables under which Beam's GCSFileSystem talks to the emulator."""
    scratch.mkdir(parents=True, exist_ok=True)
    credentials = scratch / "dummy-user-credentials.json"
    credentials.write_text(json.dumps({
        "type": "authorized_user", "client_id": "emulator", "client_secret": "emulator",
        "refresh_token": "emulator", "token": "emulator", "expiry": "2999-01-01T00:00:00Z",
    }))
    gcloud = scratch / "gcloud"
    gcloud.mkdir(exist_ok=True)
    return {
        "STORAGE_EMULATOR_HOST": endpoint,
        "GOOGLE_APPLICATION_CREDENTIALS": str(credentials),
        "GOOGLE_CLOUD_PROJECT": "beam-seg-test",
        "CLOUDSDK_CONFIG": str(gcloud),
    }


class _LoopbackOnly:
    """An audit hook that records connections to anything but loopback while armed."""

    def __init__(self):
        self.armed = False
        self.violations: list = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if not self.armed or event != "socket.connect":
            return
        address = args[1]
        if isinstance(address, tuple) and address:
            host = str(address[0])
            if not (host.startswith("127.") or host in ("::1", "localhost")):
                self.violations.append(address)


_guard: _LoopbackOnly | None = None
_guard_lock = threading.Lock()


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    global _guard
    with _guard_lock:
        if _guard is None:
            _guard = _LoopbackOnly()
    _guard.armed, before = True, len(_guard.violations)
    try:
        yield
    finally:
        _guard.armed = False
    new = _guard.violations[before:]
    assert not new, f"connections outside loopback during a GCS-emulator test: {new}"


@contextlib.contextmanager
def running(scratch: Path, bucket: str = BUCKET) -> Iterator[Emulator]:
    """Start the emulator with `bucket`, point this process (and its children) at it."""
    proc = subprocess.Popen([sys.executable, __file__, bucket], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], _STARTUP_TIMEOUT_S)
        line = proc.stdout.readline() if ready else ""
        if not line.strip().isdigit():
            raise RuntimeError(f"the GCS emulator did not start (said {line!r})")
        emulator = Emulator(f"http://127.0.0.1:{int(line)}", bucket)
        with pytest.MonkeyPatch.context() as patch, _loopback_only():
            for name, value in client_environment(emulator.endpoint, scratch).items():
                patch.setenv(name, value)
            yield emulator
    finally:
        proc.stdin.close()  # the child's signal to stop
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


class Restartable:
    """An emulator that can be stopped mid-test and started again on the same port with the
    objects it held (kept on disk): the outage a run must survive, then the recovery."""

    def __init__(self, bucket: str, data_dir: Path):
        self.bucket, self.data_dir, self.port = bucket, data_dir, 0
        self.proc: subprocess.Popen | None = None

    @property
    def emulator(self) -> Emulator:
        return Emulator(f"http://127.0.0.1:{self.port}", self.bucket)

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, self.bucket, str(self.port),
                                      str(self.data_dir)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], _STARTUP_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else ""
        if not line.strip().isdigit():
            raise RuntimeError(f"the GCS emulator did not start (said {line!r})")
        self.port = int(line)

    def stop(self) -> None:
        """Stop the child: its port refuses connections until `start`."""
        if self.proc is None:
            return
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc = None


@contextlib.contextmanager
def restartable(scratch: Path, bucket: str = BUCKET) -> Iterator[Restartable]:
    """Like `running`, with the emulator's objects on disk under `scratch` and its process
    under the test's control (`stop()`, `start()`)."""
    server = Restartable(bucket, scratch / "emulator-data")
    server.start()
    try:
        with pytest.MonkeyPatch.context() as patch, _loopback_only():
            for name, value in client_environment(server.emulator.endpoint, scratch).items():
                patch.setenv(name, value)
            yield server
    finally:
        server.stop()


def _create_only_uploads(objects) -> None:
    """GCS answers 412 to an upload with ifGenerationMatch=0 when the object exists (what
    the output lock is created with), and to a delete whose ifGenerationMatch is not the
    object's generation (how a stale lock is removed); the emulator ignores both
    conditions, so add them."""
    from http import HTTPStatus

    original = objects._multipart_upload

    def guarded(request, response, storage):
        if request.query.get("ifGenerationMatch") == ["0"]:
            name = request.query.get("name", [request.data["meta"].get("name")])[0]
            try:
                storage.get_file_obj(request.params["bucket_name"], name)
            except Exception:  # not there: create it
                return original(request, response, storage)
            response.status = HTTPStatus.PRECONDITION_FAILED
            return None
        return original(request, response, storage)

    objects._multipart_upload = guarded

    def guarded_delete(request, response, storage, *args, **kwargs):
        wanted = request.query.get("ifGenerationMatch")
        if wanted:
            try:
                obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
            except Exception:  # gone already
                response.status = HTTPStatus.NOT_FOUND
                return None
            if str(obj.get("generation")) != wanted[0]:
                response.status = HTTPStatus.PRECONDITION_FAILED
                return None
        return original_delete(request, response, storage, *args, **kwargs)

    from gcp_storage_emulator import server

    original_delete = objects.delete
    server.HANDLERS = tuple((regex, {method: guarded_delete if fn is original_delete else fn
                                     for method, fn in handlers.items()})
                            for regex, handlers in server.HANDLERS)


def _serve(bucket: str, port: int = 0, data_dir: str | None = None) -> None:
    """The child: an emulator on a port the kernel picks (no race for a free port), or on
    `port` again after a restart; in memory, or on disk under `data_dir`."""
    import logging
    from functools import partial
    from http.server import HTTPServer

    from gcp_storage_emulator.handlers import objects
    from gcp_storage_emulator.handlers.buckets import create_bucket
    from gcp_storage_emulator.server import RequestHandler
    from gcp_storage_emulator.storage import Storage

    logging.disable(logging.WARNING)  # it logs every request and "handled as string" notes
    _create_only_uploads(objects)
    store = Storage(use_memory_fs=data_dir is None, data_dir=data_dir)
    with contextlib.suppress(Exception):  # a restarted emulator has it already
        create_bucket(bucket, store)
    httpd = HTTPServer(("127.0.0.1", port), partial(RequestHandler, store))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print(httpd.server_address[1], flush=True)
    deadline = time.monotonic() + MAX_SECONDS
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([sys.stdin], [], [], 1.0)
            if ready and not os.read(sys.stdin.fileno(), 1024):
                break  # stdin closed: the test process is done or gone
    finally:
        httpd.shutdown()
        httpd.server_close()


if __name__ == "__main__":
    _serve(sys.argv[1] if len(sys.argv) > 1 else BUCKET,
           int(sys.argv[2]) if len(sys.argv) > 2 else 0, sys.argv[3] if len(sys.argv) > 3 else None)
