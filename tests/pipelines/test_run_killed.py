"""Killed runs lose nothing: Pub/Sub emulator -> ``python -m pipelines run`` -> BigQuery emulator.

``events_to_bigquery`` runs as a subprocess on the DirectRunner, where the suite's own reader
acknowledges a message only after its row or its dead letter is written. The run is killed with
SIGKILL at random points (seeded) once it has written something, while messages are published in
bursts, then run again: every message is found in the rows or the dead letters. A message can be
found twice: it was written but not yet acknowledged when the run died, so Pub/Sub delivered it
again (at least once). The BigQuery sink gives both copies the same insert id (from the message
id), which BigQuery uses to drop the second; the emulator does not de-duplicate (CONTRIBUTING), so
the test checks that every duplicate is the same row of the same message.

SIGTERM and Ctrl-C (SIGINT) stop a run as Ctrl-C always did: cancel, print the report, and
exit with 128 + the signal number.
"""

from __future__ import annotations

import random
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery
from google.cloud.pubsub_v1 import PublisherClient

from pipelines.devtools.services.specs import BIGQUERY_PROJECT
from tests.pipelines.live_bigquery import Run, rows
from tests.pipelines.test_events_to_bigquery_live import event
from tests.polling import wait_for
from transforms.io.bigquery.client import make_client

pytestmark = pytest.mark.integration

PROJECT = BIGQUERY_PROJECT
SEED = 12
KILLS = 3
MESSAGES = 600
BURST = 50
BURST_PAUSE_S = 3.0
STOP_DEADLINE_S = 120.0


def argv(subscription: str, dataset: str, endpoint: str) -> list[str]:
    """The README's options; a short lease so that a killed run's messages come back soon.

    The sink writes with insertAll: the test queries the shared BigQuery emulator while runs
    write, and a query during a Storage Write append can deadlock it (CONTRIBUTING.md's quirks).
    """
    return [
        f"--source=pubsub://{subscription}?ack_deadline=10",
        f"--sink=bigquery://{PROJECT}:{dataset}.events?endpoint={endpoint}&method=insert_all",
        f"--dead_letter=bigquery://{PROJECT}:{dataset}.dead_letter?endpoint={endpoint}",
        "--schema=builtin:events",
    ]


def messages(count: int, first: int = 0) -> list[tuple[bytes, dict[str, str]]]:
    """Events ``e{first}``..., two in ten malformed (bad JSON, a bad type); the rest good."""
    made = []
    for i in range(first, first + count):
        if i % 10 == 3:
            made.append((b'{"event_id": "e%d", not json' % i, {"n": str(i)}))
        elif i % 10 == 7:
            made.append((event(i, status_code="bad"), {"n": str(i)}))
        else:
            made.append((event(i), {"n": str(i)}))
    return made


class Publisher(threading.Thread):
    """Publishes messages in bursts while runs start and die; keeps their message ids."""

    def __init__(self, topic: str, to_send: list[tuple[bytes, dict[str, str]]]) -> None:
        super().__init__(daemon=True)
        self.topic = topic
        self.to_send = to_send
        self.ids: dict[str, int] = {}  # message id -> event number (attribute n)
        self.failure: BaseException | None = None

    def run(self) -> None:
        publisher = PublisherClient()
        try:
            for start in range(0, len(self.to_send), BURST):
                futures = {
                    int(attributes["n"]): publisher.publish(self.topic, data, **attributes)
                    for data, attributes in self.to_send[start : start + BURST]
                }
                self.ids.update({future.result(): n for n, future in futures.items()})
                if start + BURST < len(self.to_send):
                    time.sleep(BURST_PAUSE_S)  # bursts leave a backlog for a kill to land in
        except BaseException as error:  # reported by the test
            self.failure = error


def found(client: bigquery.Client, dataset: str) -> tuple[Counter[str], Counter[str]]:
    """``(event ids in the rows, source message ids in the dead letters)``, with counts."""
    landed = Counter(row["event_id"] for row in rows(client, f"{PROJECT}.{dataset}.events"))
    dead = Counter(
        row["source"]["message_id"] for row in rows(client, f"{PROJECT}.{dataset}.dead_letter")
    )
    return landed, dead


def written(client: bigquery.Client, dataset: str) -> int:
    """How many rows and dead letters there are."""
    return sum(sum(counts.values()) for counts in found(client, dataset))


def missing(publisher: Publisher, client: bigquery.Client, dataset: str) -> list[int]:
    landed, dead = found(client, dataset)
    return [
        index
        for message_id, index in publisher.ids.items()
        if message_id not in dead and f"e{index}" not in landed
    ]


def test_a_run_killed_three_times_loses_no_message(
    bigquery_emulator: Any,
    pubsub_topic: tuple[str, str],
    unique_name: str,
    tmp_path: Path,
    runs: list[Run],
) -> None:
    topic, subscription = pubsub_topic
    client = make_client(PROJECT, bigquery_emulator.endpoint)
    options = argv(subscription, unique_name, bigquery_emulator.endpoint)
    chance = random.Random(SEED)
    publisher = Publisher(topic, messages(MESSAGES))
    publisher.start()

    for kill in range(KILLS):
        before = written(client, unique_name)
        runs.append(Run(options, tmp_path / f"killed{kill}.log"))
        wait_for(lambda: written(client, unique_name) > before, "the run to write")  # noqa: B023
        time.sleep(chance.uniform(0.0, 3.0))  # then a random point of its work
        assert runs[-1].stop(signal.SIGKILL) == -signal.SIGKILL

    runs.append(Run(options, tmp_path / "rerun.log"))
    publisher.join(timeout=STOP_DEADLINE_S)
    assert publisher.failure is None and len(publisher.ids) == MESSAGES
    marker = Publisher(topic, messages(1, first=MESSAGES))  # only the rerun can write it
    marker.run()
    publisher.ids.update(marker.ids)
    wait_for(lambda: not missing(publisher, client, unique_name), "every message written")
    assert runs[-1].stop(signal.SIGTERM) == 128 + signal.SIGTERM, runs[-1].output()

    landed, dead = found(client, unique_name)
    assert missing(publisher, client, unique_name) == []
    good = {f"e{i}" for i in range(MESSAGES + 1) if i % 10 not in (3, 7)}
    assert set(landed) == good  # no row that was not published, none of a malformed message
    malformed = {m for m, i in publisher.ids.items() if i % 10 in (3, 7)}
    assert malformed <= set(dead)
    # Duplicates: the same message delivered again after a kill; the same row each time, and
    # the same insert id, which BigQuery (not its emulator) de-duplicates.
    table = rows(client, f"{PROJECT}.{unique_name}.events")
    for event_id, count in landed.items():
        if count > 1:
            copies = [r for r in table if r["event_id"] == event_id]
            assert all(copy == copies[0] for copy in copies)
    assert re.search(
        r"read \d+ = written \d+ \+ dead_lettered \d+ \+ dropped \d+", runs[-1].output()
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_run_with_a_report_and_nothing_lost(
    signum: int,
    bigquery_emulator: Any,
    pubsub_topic: tuple[str, str],
    unique_name: str,
    tmp_path: Path,
    runs: list[Run],
) -> None:
    topic, subscription = pubsub_topic
    client = make_client(PROJECT, bigquery_emulator.endpoint)
    runs.append(Run(argv(subscription, unique_name, bigquery_emulator.endpoint), tmp_path / "log"))
    publisher = Publisher(topic, messages(20))
    publisher.run()
    assert publisher.failure is None
    wait_for(lambda: not missing(publisher, client, unique_name), "every message written")

    code = runs[-1].stop(signum)

    output = runs[-1].output()
    assert code == 128 + signum, output
    name = signal.Signals(signum).name
    assert f"events_to_bigquery: CANCELLED (stopped by {name})" in output
    report = output[output.index("events_to_bigquery: CANCELLED") :]
    counts = {
        name: int(value)
        for name, value in re.findall(r"^  (read|written|dead_lettered) +(\d+)", report, re.M)
    }
    assert counts["read"] >= 20
    assert counts["written"] + counts["dead_lettered"] >= 20
    assert missing(publisher, client, unique_name) == []
