"""Exactly-once Storage Write: a run killed after writing rows it had not yet acknowledged.

``events_to_bigquery`` reads Pub/Sub and writes with ``mode=exactly_once``; the run is killed
with SIGKILL as soon as rows land. The test then pulls (and hands back) what the subscription
still holds, to find the messages that were written but not acknowledged (it kills again if the
kill fell where there were none), and runs the pipeline again on the same unacknowledged
messages: every event is in the table once.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core.exceptions import DeadlineExceeded
from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

from pipelines.devtools.services.specs import BIGQUERY_PROJECT
from tests.pipelines.test_events_to_bigquery_live import event, rows, wait_for
from tests.pipelines.test_run_killed import Run
from transforms.io.bigquery.client import make_client

pytestmark = pytest.mark.integration

PROJECT = BIGQUERY_PROJECT
MESSAGES = 150
KILL_TRIES = 3


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


def unacknowledged(subscription: str, settled: set[str], published: set[str]) -> dict[str, str]:
    """Pulls until every message is either in ``settled`` or pulled; hands the pulled back.

    Returns:
        ``{event id: ack id}`` of the messages the subscription still held.
    """
    subscriber = SubscriberClient()
    held: dict[str, str] = {}

    def complete() -> bool:
        try:
            response = subscriber.pull(subscription=subscription, max_messages=200, timeout=2)
        except DeadlineExceeded:
            response = None
        for received in response.received_messages if response else ():
            held[received.message.attributes["event_id"]] = received.ack_id
        return settled | set(held) >= published

    wait_for(complete, "the killed run's leases to expire")
    if held:
        subscriber.modify_ack_deadline(
            subscription=subscription, ack_ids=list(held.values()), ack_deadline_seconds=0
        )
    return held


def test_a_run_killed_after_writing_leaves_no_duplicate_when_run_again(
    bigquery_emulator: Any,
    pubsub_topic: tuple[str, str],
    unique_name: str,
    tmp_path: Path,
    runs: list[Run],
) -> None:
    topic, subscription = pubsub_topic
    client = make_client(PROJECT, bigquery_emulator.endpoint)
    table = f"{PROJECT}.{unique_name}.events"
    options = [
        f"--source=pubsub://{subscription}?ack_deadline=10",
        f"--sink=bigquery://{PROJECT}:{unique_name}.events?endpoint="
        f"{bigquery_emulator.endpoint}&mode=exactly_once&batch_size=20",
        f"--dead_letter=file://{tmp_path}/dlq",
        "--schema=builtin:events",
    ]
    publisher = PublisherClient()
    published = {f"e{i}" for i in range(MESSAGES)}
    futures = [publisher.publish(topic, event(i), event_id=f"e{i}") for i in range(MESSAGES)]
    assert all(future.result() for future in futures)

    written_unacked: set[str] = set()
    for kill in range(KILL_TRIES):
        before = len(rows(client, table))
        runs.append(Run(options, tmp_path / f"killed{kill}.log"))
        wait_for(lambda: len(rows(client, table)) > before, "the run to write")  # noqa: B023
        assert runs[-1].stop(signal.SIGKILL) == -signal.SIGKILL
        landed = {row["event_id"] for row in rows(client, table)}
        written_unacked = landed & set(unacknowledged(subscription, landed, published))
        if written_unacked or landed == published:
            break
    assert written_unacked, "no kill fell between a write and its acknowledgement"

    runs.append(Run(options, tmp_path / "rerun.log"))
    wait_for(lambda: {r["event_id"] for r in rows(client, table)} == published, "every event")
    assert runs[-1].stop(signal.SIGTERM) == 128 + signal.SIGTERM, runs[-1].output()

    counts = Counter(row["event_id"] for row in rows(client, table))
    assert set(counts) == published
    assert [event_id for event_id, count in counts.items() if count > 1] == []
