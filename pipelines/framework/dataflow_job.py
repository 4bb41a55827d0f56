"""A pipeline as Dataflow receives it, translated offline: the job file and the staged graph.

``DataflowRunner`` turns a pipeline into a job request: the job (JSON: name, type, environment,
options) and the graph, Beam's runner API proto after the runner's own rewrites (its overrides
of Pub/Sub reads, its Docker environments), which it stages as ``pipeline.pb`` and names in the
job's ``environment.sdkPipelineOptions.options.pipelineUrl``. Since runner v2 the job carries no
``steps`` of its own: the staged graph is what Dataflow checks an update against.

`translate` makes both without credentials, Cloud Storage or network: Beam's ``--dry_run``
translates the pipeline and stops before staging and submitting, and Beam's own ``Environment``
builds the job's environment, with the environment version of the ``DataflowApplicationClient``
the runner would make next to submit it (made offline too: ``--no_auth``); the two files are
written to a folder::

    DIR/job.json       the job, as Beam would send it (pipelineUrl: "pipeline.pb")
    DIR/pipeline.pb    the translated graph

`read_graph` reads the graph of such a job file back, from the file its ``pipelineUrl`` names,
beside the job file: a classic template's files (``--template_location``) or a job file Beam
wrote with ``--dataflow_job_file`` can be read the same way once its staged ``pipeline.pb``
is copied beside it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2

from pipelines.catalog import PipelineSpec
from pipelines.framework.options import OptionError

__all__ = ["JOB_FILE", "STAGED_GRAPH", "read_graph", "translate"]

JOB_FILE = "job.json"
STAGED_GRAPH = "pipeline.pb"
"""Beam's name for the staged graph (``apache_beam.runners.internal.names``)."""
# Used only where a run would name its project, region and Cloud Storage folder: they change
# the job's environment, never its graph.
_PLACEHOLDERS = {"project": "offline-translation", "region": "us-central1",
                 "temp_location": "gs://offline-translation/temp"}  # fmt: skip
# The experiment spares a `pip freeze` of the submitting environment, staged for the workers' logs.
_OFFLINE = ("--runner=DataflowRunner", "--dry_run=true", "--no_auth",
            "--experiments=disable_logging_submission_environment")  # fmt: skip


def _beam_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with Dataflow's offline translation options, and placeholders for the missing."""
    if any(arg == "--update" or arg.startswith("--update=") for arg in argv):
        raise OptionError(
            "--update looks up the running job on Dataflow: translate without it (the "
            "translation is the same), and pass --update to template launch"
        )
    cloud = PipelineOptions(list(argv)).view_as(GoogleCloudOptions)
    if cloud.temp_location and not cloud.temp_location.startswith("gs://"):
        raise OptionError(
            f"--temp_location={cloud.temp_location}: Dataflow needs a gs:// folder (Beam would "
            "look for a default bucket online); leave it out, the translation writes nothing there"
        )
    missing = [f"--{name}={value}" for name, value in _PLACEHOLDERS.items()
               if not getattr(cloud, name)]  # fmt: skip
    return [*missing, *argv, *_OFFLINE]


def translate(spec: PipelineSpec, argv: Sequence[str], directory: Path) -> Path:
    """Translates a pipeline for Dataflow, offline, and writes the job file and its graph.

    Args:
        spec: the pipeline.
        argv: its options, as for ``run`` (``--source=...``); Beam's ``--project``, ``--region``
            and ``--temp_location`` are filled in with placeholders when missing.
        directory: where ``job.json`` and ``pipeline.pb`` are written (created if needed).

    Returns:
        The job file.

    Raises:
        OptionError, EndpointError: an option cannot be used, or a source or sink does not run
            on Dataflow.
    """
    from apache_beam.runners.dataflow.internal import apiclient

    from pipelines.framework.run import build_pipeline

    pipeline, _ = build_pipeline(spec, _beam_argv(argv))
    result: Any = pipeline.run()
    job = result.job  # a dry run's result holds the job it did not submit
    graph = job.proto_pipeline.SerializeToString()
    client = apiclient.DataflowApplicationClient(job.options, job.root_staging_location)
    job.proto.environment = apiclient.Environment(
        packages=[],
        options=job.options,
        environment_version=client.environment_version,
        proto_pipeline_staged_url=STAGED_GRAPH,
        proto_pipeline=job.proto_pipeline,
        pipeline_proto_hash=hashlib.sha256(graph).hexdigest(),
    ).proto
    directory.mkdir(parents=True, exist_ok=True)
    (directory / STAGED_GRAPH).write_bytes(graph)
    job_file = directory / JOB_FILE
    job_file.write_text(job.json() + "\n", encoding="utf-8")
    return job_file


def read_graph(job_file: Path, job: dict[str, Any]) -> beam_runner_api_pb2.Pipeline:
    """The graph of a Dataflow job file: the staged file its ``pipelineUrl`` names, beside it.

    Args:
        job_file: the job file's path.
        job: its content (a Dataflow ``Job`` as JSON).

    Raises:
        OptionError: the job names no staged graph, or the file is not beside the job file.
    """
    options = job.get("environment", {}).get("sdkPipelineOptions", {}).get("options", {})
    url = options.get("pipelineUrl")
    if not url:
        raise OptionError(
            f"{job_file}: a Dataflow job file names its graph in "
            "environment.sdkPipelineOptions.options.pipelineUrl, and this one has none"
        )
    staged = job_file.parent / PurePosixPath(url).name
    if not staged.is_file():
        raise OptionError(f"{job_file}: its graph {url} is not beside it: copy it to {staged}")
    return beam_runner_api_pb2.Pipeline.FromString(staged.read_bytes())
