"""Jobs on a managed runner (Dataflow): submitted like gcloud, followed on request, stopped apart.

``run NAME --runner=DataflowRunner ...`` submits the job and returns at once with its id and
console address, as ``gcloud dataflow flex-template run`` does; ``--wait`` follows the job,
printing each state it reaches, until it ends. Stopping the follower (Ctrl-C, SIGTERM,
``--max_seconds``) stops following only: the job keeps running, and the command says how to
stop it. Stopping is a command of its own, ``drain JOB_ID`` (finish what was read, then stop)
or ``cancel JOB_ID`` (stop now), each one ``jobs.update`` call with ``requestedState``.

The API is Dataflow's, with the application default credentials; Beam's
``--dataflow_endpoint`` (``run``) or ``--api_endpoint`` (``drain``, ``cancel``) names another
one, and a plain ``http://`` endpoint (a local stub) is called without credentials.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
)

from pipelines.framework.options import ArgumentParser

__all__ = [
    "ENDS",
    "JobRef",
    "console_url",
    "follow",
    "is_managed",
    "job_of",
    "main",
    "request_state",
    "submitted",
]

DEFAULT_ENDPOINT = "https://dataflow.googleapis.com"
ENDS = frozenset(
    {"JOB_STATE_DONE", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_DRAINED",
     "JOB_STATE_UPDATED"}
)  # fmt: skip
"""The states a job never leaves."""
_REQUESTED = {"drain": "JOB_STATE_DRAINED", "cancel": "JOB_STATE_CANCELLED"}
FOLLOW_INTERVAL_S = 10.0


@dataclass(frozen=True)
class JobRef:
    """A job on Dataflow: its project, region, id and the API endpoint that serves it."""

    project: str
    region: str
    job_id: str
    api_endpoint: str | None = None

    @property
    def console(self) -> str:
        """The job's page in the Google Cloud console."""
        return console_url(self.project, self.region, self.job_id)


def is_managed(options: PipelineOptions) -> bool:
    """Whether a run submits a job to Dataflow (``--runner=DataflowRunner``, not ``--dry_run``)."""
    runner = options.view_as(StandardOptions).runner
    named = runner if isinstance(runner, str) else type(runner).__name__
    return named == "DataflowRunner" and not options.view_as(TestOptions).dry_run


def job_of(options: PipelineOptions, result: Any) -> JobRef:
    """The job a Dataflow run submitted (Beam's ``DataflowPipelineResult``)."""
    cloud = options.view_as(GoogleCloudOptions)
    return JobRef(cloud.project, cloud.region, result.job_id(), cloud.dataflow_endpoint)


def console_url(project: str, region: str, job_id: str) -> str:
    """Returns the console address of a Dataflow job."""
    return f"https://console.cloud.google.com/dataflow/jobs/{region}/{job_id}?project={project}"


def _client(api_endpoint: str | None) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.dataflow_v1beta3 import JobsV1Beta3Client

    if api_endpoint == DEFAULT_ENDPOINT:
        api_endpoint = None
    local = api_endpoint is not None and api_endpoint.startswith("http://")
    return JobsV1Beta3Client(
        transport="rest",
        client_options={"api_endpoint": api_endpoint} if api_endpoint else None,
        credentials=AnonymousCredentials() if local else None,
    )


def job_state(job: JobRef) -> str:
    """Returns the job's current state, e.g. ``JOB_STATE_RUNNING``."""
    found = _client(job.api_endpoint).get_job(
        request={"project_id": job.project, "location": job.region, "job_id": job.job_id}
    )
    return str(found.current_state.name)


def request_state(job: JobRef, command: str) -> str:
    """Asks Dataflow to ``drain`` or ``cancel`` the job; returns its state as Dataflow answers."""
    updated = _client(job.api_endpoint).update_job(
        request={
            "project_id": job.project,
            "location": job.region,
            "job_id": job.job_id,
            "job": {"requested_state": _REQUESTED[command]},
        }
    )
    return str(updated.current_state.name)


def follow(
    state: Callable[[], str],
    max_seconds: float,
    say: Callable[[str], None] = print,
    interval: float | None = None,
) -> str | None:
    """Polls a job's state until it ends or ``max_seconds`` pass (0: no limit).

    Prints each new state; polls every ``interval`` seconds (`FOLLOW_INTERVAL_S`). Never
    changes the job: Ctrl-C (or SIGTERM, raised as
    `KeyboardInterrupt`) ends the following only, and propagates.

    Returns:
        The state the job ended in, or ``None`` when the following stopped first.
    """
    interval = FOLLOW_INTERVAL_S if interval is None else interval
    deadline = time.monotonic() + max_seconds if max_seconds > 0 else None
    last = ""
    while True:
        current = state()
        if current != last:
            say(f"  {current}")
            last = current
        if current in ENDS:
            return current
        if deadline is not None and time.monotonic() + interval > deadline:
            return None
        time.sleep(interval)


def submitted(
    job: JobRef, wait: bool, max_seconds: float, say: Callable[[str], None] = print
) -> str:
    """Reports a submitted job and follows it when asked; returns its last known state.

    Args:
        job: the submitted job.
        wait: follow it until it ends (or ``max_seconds``, or Ctrl-C).
        max_seconds: how long to follow (0: until it ends).
        say: where lines for a person go.
    """
    say(f"submitted job {job.job_id}")
    say(f"  console: {job.console}")
    stop_hint = (
        f"  it keeps running; stop it with: python -m pipelines drain {job.job_id} "
        f"--project={job.project} --region={job.region} (or cancel)"
    )
    if not wait:
        say(stop_hint)
        return "JOB_STATE_PENDING"
    try:
        ended = follow(lambda: job_state(job), max_seconds, say)
    except KeyboardInterrupt:
        say("stopped following")
        say(stop_hint)
        raise
    if ended is None:
        say("stopped following after --max_seconds")
        say(stop_hint)
        return "JOB_STATE_RUNNING"
    return ended


def _parser(command: str) -> argparse.ArgumentParser:
    what = {"drain": "finish what was read, then stop", "cancel": "stop now"}[command]
    parser = ArgumentParser(prog=f"pipelines {command}", description=f"{command} a Dataflow job: "
                            f"{what}; the job's state is printed.")  # fmt: skip
    parser.add_argument("job_id", help="the job's id, as run printed it")
    parser.add_argument("--project", required=True, help="the job's project")
    parser.add_argument("--region", required=True, help="the job's region, e.g. us-central1")
    parser.add_argument("--api_endpoint", help="another Dataflow API endpoint (tests)")
    return parser


def main(command: str, argv: Sequence[str]) -> int:
    """``drain`` or ``cancel`` a job: ``JOB_ID --project=P --region=R``; returns the exit code."""
    args = _parser(command).parse_args(list(argv))
    job = JobRef(args.project, args.region, args.job_id, args.api_endpoint)
    state = request_state(job, command)
    print(f"{command} requested for job {job.job_id}: {state}")
    print(f"  console: {job.console}")
    return 0
