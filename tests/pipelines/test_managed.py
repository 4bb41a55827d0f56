"""``run`` on Dataflow submits and returns; ``--wait`` follows; ``drain`` and ``cancel`` stop.

Against a local stub of the Dataflow REST API (jobs.get, jobs.update); Beam's submission itself
needs Cloud Storage and credentials, and is replaced by a result that names a job.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from google.cloud.dataflow_v1beta3 import JobState

from pipelines.framework import managed, run
from pipelines.framework.cli import main
from pipelines.framework.options import parse_options

JOB = "2026-12-03_01_02_03-42"
PATH = f"/v1b3/projects/proj-x/locations/us-central1/jobs/{JOB}"


class _Stub(http.server.BaseHTTPRequestHandler):
    states: list[str] = []
    requests: list[tuple[str, str, dict[str, Any]]] = []

    def _reply(self, state: str) -> None:
        body = json.dumps({"id": JOB, "currentState": state}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).requests.append(("GET", self.path.split("?")[0], {}))
        states = type(self).states
        self._reply(states.pop(0) if len(states) > 1 else states[0])

    def do_PUT(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(("PUT", self.path.split("?")[0], body))
        self._reply("JOB_STATE_RUNNING")

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def dataflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[Any]]]:
    """The stub's endpoint and the requests it got.

    A run on Dataflow is built with the pipeline's own options, but Beam's validation and
    submission (Cloud Storage, credentials) are replaced: the run submits job ``JOB``.
    """
    _Stub.states, _Stub.requests = ["JOB_STATE_RUNNING"], []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Stub)
    endpoint = f"http://127.0.0.1:{server.server_port}"

    class Submitted:
        def job_id(self) -> str:
            return JOB

        def cancel(self) -> None:
            raise AssertionError("the job was cancelled")

    class Pipeline:
        def __init__(self, argv: list[str]) -> None:
            self.options = PipelineOptions(argv)

        def run(self) -> Submitted:
            return Submitted()

    def build(spec: Any, argv: list[str]) -> tuple[Pipeline, Any]:
        values, beam_args = parse_options(spec.name, "", spec.options, argv)
        config = spec.configure(values)
        return Pipeline([*beam_args, f"--dataflow_endpoint={endpoint}"]), config

    monkeypatch.setattr(run, "build_pipeline", build)
    monkeypatch.setattr(managed, "FOLLOW_INTERVAL_S", 0.01)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint, _Stub.requests
    finally:
        server.shutdown()
        server.server_close()


def _run(tmp_path: Path, *extra: str) -> list[str]:
    return ["run", "events_to_bigquery", "--source=pubsub://projects/proj-x/subscriptions/sub-x",
            f"--sink=file://{tmp_path}/out", f"--dead_letter=file://{tmp_path}/dlq",
            "--runner=DataflowRunner", "--project=proj-x", "--region=us-central1",
            *extra]  # fmt: skip


def test_run_submits_prints_the_job_and_returns_without_touching_it(
    dataflow: tuple[str, list[Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, requests = dataflow
    assert main(_run(tmp_path)) == 0
    out = capsys.readouterr().out
    assert f"submitted job {JOB}" in out
    assert f"https://console.cloud.google.com/dataflow/jobs/us-central1/{JOB}?project=proj-x" in out
    assert f"python -m pipelines drain {JOB}" in out
    assert requests == []  # not followed, not cancelled


def test_wait_follows_the_job_until_it_ends(
    dataflow: tuple[str, list[Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, requests = dataflow
    _Stub.states = ["JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_DONE"]
    assert main(_run(tmp_path, "--wait")) == 0
    out = capsys.readouterr().out
    assert out.index("JOB_STATE_PENDING") < out.index("JOB_STATE_RUNNING") < out.index("DONE")
    assert {(method, path) for method, path, _ in requests} == {("GET", PATH)}


def test_stopping_the_follower_never_stops_the_job(
    dataflow: tuple[str, list[Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, requests = dataflow
    assert main(_run(tmp_path, "--wait", "--max_seconds=0.2")) == 0
    assert "stopped following after --max_seconds" in capsys.readouterr().out
    job = managed.JobRef("proj-x", "us-central1", JOB, endpoint)
    calls = iter([RuntimeError, KeyboardInterrupt])

    def interrupted(unused: Any) -> str:  # the second poll is interrupted by Ctrl-C
        if next(calls) is KeyboardInterrupt:
            raise KeyboardInterrupt
        return "JOB_STATE_RUNNING"

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(managed, "job_state", interrupted)
        with pytest.raises(KeyboardInterrupt):
            managed.submitted(job, wait=True, max_seconds=0)
    assert "it keeps running" in capsys.readouterr().out
    assert all(method == "GET" for method, _, _ in requests)


@pytest.mark.parametrize(
    ("command", "state"), [("drain", "JOB_STATE_DRAINED"), ("cancel", "JOB_STATE_CANCELLED")]
)
def test_drain_and_cancel_request_the_state(
    dataflow: tuple[str, list[Any]], command: str, state: str
) -> None:
    endpoint, requests = dataflow
    argv = [command, JOB, "--project=proj-x", "--region=us-central1", f"--api_endpoint={endpoint}"]
    assert main(argv) == 0
    ((method, path, body),) = requests
    assert (method, path) == ("PUT", PATH)
    requested = body["requestedState"]
    assert (JobState(requested).name if isinstance(requested, int) else requested) == state
