"""Exactly-once Storage Write across a killed worker: no row twice after a rerun.

``events_to_bigquery`` reads Pub/Sub and writes with ``mode=exactly_once``. The run is killed
with SIGKILL while it writes, after it has committed rows of messages it has not acknowledged
yet (its write-log lookups show its appends; it acknowledges a bundle only once all of it is
written). Those messages come back to the next run, a new worker with a new committed stream,
whose write log finds them written: the next runs read more messages than were missing from
the table (all is tried again with new messages if a kill fell where none was), and once
every event is in the table, each is there once and each run's counters balance.

The runs write to a BigQuery emulator of their own (`pipelines.devtools.services.private`):
bqemulator deadlocks when a REST call reaches its database while a Storage Write append runs
there (CONTRIBUTING.md), and it would hang for the whole suite. So nothing but the run talks
to it while a run is alive (one DirectRunner worker thread calls it one request at a time):
the test follows the run in the emulator's request log, and queries the table only between
runs, once a write of its own has waited for any append of a killed run still running.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import bigquery
from google.cloud.pubsub_v1 import PublisherClient

from pipelines.devtools.services.private import PrivateBigQuery, private_bigquery
from pipelines.devtools.services.processes import pid_alive
from pipelines.devtools.services.specs import BIGQUERY_PROJECT
from tests.pipelines.live_bigquery import Run, rows
from tests.pipelines.test_events_to_bigquery_live import event
from tests.polling import wait_for
from transforms.io.bigquery.client import (
    EMULATOR_ENV,
    STORAGE_EMULATOR_ENV,
    ensure_table,
    make_client,
)
from transforms.io.bigquery.rows import RowEncoder
from transforms.io.bigquery.write_api import (
    DEFAULT_STREAM,
    append,
    make_write_client,
    stream_parent,
)
from transforms.schema import Field, Schema

pytestmark = pytest.mark.integration

PROJECT = BIGQUERY_PROJECT
MESSAGES = 100
BATCH = 10  # rows per append: the first pull's messages take several appends
LOOKUPS_BEFORE_KILL = 3  # write-log lookups: the one before each append
KILL_TRIES = 3
ACK_DEADLINE_S = 10  # the shortest lease Pub/Sub allows: a killed run's messages come back
RUN_SECONDS = 5  # reruns stop themselves: none is killed, none runs while the test queries
DEADLINE_S = 60.0
POLL_S = 0.05
FENCE_SCHEMA = Schema((Field("n", "INTEGER", "NULLABLE"),))


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBigQuery]:
    with private_bigquery(tmp_path_factory.mktemp("bigquery")) as private:
        yield private
    assert not pid_alive(private.pid)  # stopped, with its process group


def lookups(log: Path) -> int:
    """How many queries (the sink's write-log lookups) the emulator has served."""
    count = 0
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("method") == "POST" and str(entry.get("path", "")).endswith("/jobs"):
            count += 1
    return count


class Fence:
    """A write of the test's own: it returns once no append of a killed run still runs.

    The emulator runs appends one at a time, under one lock, and finishes one whose client
    died; a REST call while one runs can deadlock it.
    """

    def __init__(self, emulator: PrivateBigQuery, client: bigquery.Client, dataset: str) -> None:
        table = f"{PROJECT}.{dataset}.fence"
        ensure_table(client, table, FENCE_SCHEMA)
        self._stream = f"{stream_parent(table)}/streams/{DEFAULT_STREAM}"
        self._write = make_write_client(emulator.storage_endpoint)
        self._encoder = RowEncoder(FENCE_SCHEMA)

    def wait(self) -> None:
        row = self._encoder.encode({"n": 1})
        assert append(self._write, self._stream, self._encoder.descriptor, [row]) == []


def publish(topic: str, first: int) -> set[str]:
    """Publishes events ``e{first}``... (`MESSAGES` of them); returns their ids."""
    publisher = PublisherClient()
    futures = [publisher.publish(topic, event(i)) for i in range(first, first + MESSAGES)]
    assert all(future.result(timeout=30) for future in futures)
    return {f"e{i}" for i in range(first, first + MESSAGES)}


def event_ids(client: bigquery.Client, table: str) -> Counter[str]:
    return Counter(row["event_id"] for row in rows(client, table))


def test_a_killed_run_leaves_no_duplicate_when_run_again(
    emulator: PrivateBigQuery,
    pubsub_topic: tuple[str, str],
    unique_name: str,
    tmp_path: Path,
    runs: list[Run],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic, subscription = pubsub_topic
    monkeypatch.setenv(EMULATOR_ENV, emulator.endpoint)  # the runs see this emulator only
    monkeypatch.setenv(STORAGE_EMULATOR_ENV, emulator.storage_endpoint)
    client = make_client(PROJECT, emulator.endpoint)
    fence = Fence(emulator, client, unique_name)
    table = f"{PROJECT}.{unique_name}.events"
    options = [
        f"--source=pubsub://{subscription}?ack_deadline={ACK_DEADLINE_S}"
        f"&max_in_flight={MESSAGES // 2}",
        f"--sink=bigquery://{PROJECT}:{unique_name}.events?endpoint={emulator.endpoint}"
        f"&storage_endpoint={emulator.storage_endpoint}&mode=exactly_once&batch_size={BATCH}",
        f"--dead_letter=file://{tmp_path}/dlq",
        "--schema=builtin:events",
    ]
    published: set[str] = set()
    reports: list[str] = []
    for attempt in range(KILL_TRIES):
        published |= publish(topic, attempt * MESSAGES)
        before = lookups(emulator.log)
        runs.append(Run(options, tmp_path / f"killed{attempt}.log"))
        wait_for(
            lambda: lookups(emulator.log) >= before + LOOKUPS_BEFORE_KILL,  # noqa: B023
            "the run to write",
            deadline_s=DEADLINE_S,
            every_s=POLL_S,
        )
        assert runs[-1].stop(signal.SIGKILL) == -signal.SIGKILL
        fence.wait()
        landed = event_ids(client, table)
        assert [event_id for event_id, count in landed.items() if count > 1] == []
        unwritten = len(published - set(landed))
        # Runs until every event is in the table; the first outlives the killed run's leases.
        reads: list[int] = []
        deadline = time.monotonic() + DEADLINE_S
        while not published <= set(event_ids(client, table)):
            assert time.monotonic() < deadline, "the reruns did not write every event"
            seconds = RUN_SECONDS if reads else ACK_DEADLINE_S
            runs.append(Run([*options, f"--max_seconds={seconds}"], tmp_path / "rerun.log"))
            assert runs[-1].process.wait(timeout=DEADLINE_S) == 0, runs[-1].output()
            reports.append(runs[-1].output())
            reads.append(int(re.findall(r"^  read +(\d+)$", reports[-1], re.M)[-1]))
        # Every rerun balanced (below): each message it read it wrote, or found written. So
        # more reads than events missing from the table after the kill means messages whose
        # rows were written, but not acknowledged, came again to a new worker.
        if sum(reads) > unwritten:
            break
    else:
        pytest.fail("no kill fell between a write and its acknowledgement")

    counts = event_ids(client, table)
    assert set(counts) == published
    assert [event_id for event_id, count in counts.items() if count > 1] == []
    for report in reports:
        assert re.search(
            r"read \d+ = written \d+ \+ dead_lettered \d+ \+ dropped \d+: balanced", report
        ), report
