"""Dataflow without a cloud: the documented launch command builds a real Dataflow job offline.

The launch command is read from docs/dataflow.md, so the documentation and this test
cannot drift apart. It runs through the `beam-seg` entry point with `--dry_run=True`: the
DataflowRunner validates the options, pickles every DoFn into the portable pipeline and
builds the job, then returns before submitting. The runner's own job-description code
(what it runs next on a real submission) then stages the sdist and the pipeline to the
GCS emulator's bucket and fills in the worker pool. Only the final API call is left out.
"""

from __future__ import annotations

import io
import re
import shlex
import tarfile

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.internal import pickler
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner
from apache_beam.runners.dataflow.internal import apiclient

from beam_seg import cli, storage

import gcs_emulator
from conftest import DATA, ROOT
from pipeline_helpers import label_maps, segment

pytestmark = pytest.mark.real_model  # the second tier: runs the real model

DOC = ROOT / "docs" / "dataflow.md"
AACHEN = DATA / "videos" / "cityscapes_aachen_seq0001_512x256_17fps.mp4"
STILL = DATA / "images" / "dashcam" / "vehicle_test2.jpg"
IMAGE = "europe-west1-docker.pkg.dev/beam-seg-dry-run/beam-seg/beam-seg:0.1.0"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    with gcs_emulator.running(tmp_path_factory.mktemp("gcs")) as emulator:
        yield emulator


def documented_launch_args(values: dict[str, str]) -> list[str]:
    """The arguments after `beam-seg segment` in docs/dataflow.md's launch block, with its
    shell variables ($BUCKET, $PROJECT, …) replaced by `values`."""
    text = DOC.read_text()
    match = re.search(r"<!-- launch-command:.*?-->\s*```bash\n(.*?)```", text, re.S)
    assert match, f"{DOC} has no launch-command block"
    command = match.group(1).replace("\\\n", " ")
    unknown = set(re.findall(r"\$\{?(\w+)", command)) - values.keys()
    assert not unknown, f"the launch command uses variables this test does not set: {unknown}"
    command = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], command)
    argv = shlex.split(command)
    assert argv[:2] == ["beam-seg", "segment"]
    return argv[2:]


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_the_documented_launch_command_builds_a_dataflow_job(gcs, monkeypatch):
    args = documented_launch_args({"BUCKET": gcs.bucket, "PROJECT": "beam-seg-dry-run",
                                   "REGION": "europe-west1", "IMAGE": IMAGE})
    gcs.upload(AACHEN, gcs.uri("drives", AACHEN.name))
    monkeypatch.chdir(ROOT)  # the docs launch from the project root (--setup_file ./setup.py)
    pipelines = []

    class RecordingPipeline(beam.Pipeline):  # a real Pipeline that lets the test find its runner
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            pipelines.append(self)

    monkeypatch.setattr(beam, "Pipeline", RecordingPipeline)
    assert cli.main(["segment", *args, "--dry_run=True"]) == 0

    (pipeline,) = pipelines
    assert isinstance(pipeline.runner, DataflowRunner)
    job = pipeline.runner.job
    proto = job.proto_pipeline

    # Every DoFn was pickled into the portable pipeline, and unpickles as a worker would.
    dofns = []
    for transform in proto.components.transforms.values():
        if transform.spec.urn == common_urns.primitives.PAR_DO.urn:
            payload = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
            fn = pickler.loads(payload.do_fn.payload)[0]
            while isinstance(getattr(fn, "_fn", None), beam.DoFn):  # with_exception_handling's wrapper
                fn = fn._fn
            dofns.append(fn)
    assert any("RunInference" in type(fn).__name__ for fn in dofns)
    configs = [fn.cfg for fn in dofns if hasattr(fn, "cfg")]
    assert configs and {cfg.output for cfg in configs} == {_option(args, "--output")}

    # The workers' environment is the custom container, with the package staged beside it.
    (environment,) = proto.components.environments.values()
    docker = beam_runner_api_pb2.DockerPayload.FromString(environment.payload)
    assert docker.container_image == IMAGE
    staged_names = {beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(d.role_payload).staged_name
                    for d in environment.dependencies}
    assert "workflow.tar.gz" in staged_names  # the sdist that --setup_file builds

    # What a real submission does next, short of the API call: stage, describe the workers.
    client = apiclient.DataflowApplicationClient(job.options, job.root_staging_location)
    client.create_job_description(job)
    (pool,) = job.proto.environment.worker_pools
    assert pool.machine_type == _option(args, "--machine_type")
    assert pool.num_threads_per_worker == int(_option(args, "--number_of_worker_harness_threads"))
    assert pool.autoscaling_settings.max_num_workers == int(_option(args, "--max_num_workers"))
    assert pool.worker_harness_container_image == IMAGE
    assert {p.name for p in pool.packages} >= {"workflow.tar.gz"}
    assert "pickled_main_session" not in {p.name for p in pool.packages}

    staging = job.options.view_as(beam.options.pipeline_options.GoogleCloudOptions).staging_location
    assert staging.startswith(_option(args, "--staging_location") + "/")
    staged = {uri.rsplit("/", 1)[1] for uri in storage.list_files(staging + "/*")}
    assert {"pipeline.pb", "workflow.tar.gz"} <= staged
    assert storage.read_bytes(staging + "/pipeline.pb") == proto.SerializeToString()
    with tarfile.open(fileobj=io.BytesIO(storage.read_bytes(staging + "/workflow.tar.gz"))) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"setup.py", "beam_seg/models/registry.py", "beam_seg/storage/operations.py",
            "pipelines/segment.py"} <= names

    assert storage.list_files(_option(args, "--output") + "/**") == []  # nothing ran


def test_model_copies_share_one_model_between_worker_processes(tmp_path):
    inputs = [AACHEN, STILL]
    assert segment(inputs, tmp_path / "single", "--segment-frames", "8") == 0
    assert segment(inputs, tmp_path / "shared", "--segment-frames", "8", "--model-copies", "1",
                   "--direct_running_mode=multi_processing", "--direct_num_workers=2") == 0
    single, shared = label_maps(tmp_path / "single"), label_maps(tmp_path / "shared")
    assert len(single) == 31 and single.keys() == shared.keys()
    for name in single:
        np.testing.assert_array_equal(single[name], shared[name], err_msg=name)
