"""Kafka -> cdc_replicate -> Redis state, killed with SIGKILL during a Redis outage, then rerun.

The live run (a subprocess, as a user starts it) applies the first part of the history, then
Redis becomes unreachable (a proxy in front of the test server drops and refuses connections)
while the rest of the history is produced. The sink keeps retrying, holding the stream: the run
is killed (SIGKILL) while it does. With Redis back, a rerun of the same consumer group starts
from the offsets committed before the outage and the replica equals the source tables; nothing
was dead-lettered ``sink_unavailable`` (nor anything else).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from pipelines.devtools.services.specs import ServiceSpec
from pipelines.framework.run import run_pipeline
from tests.outage import OutageProxy, outage_proxy
from tests.pipelines.test_cdc_replicate_live import (  # noqa: F401 (fixtures)
    HISTORY,
    PARTITIONS,
    SPEC,
    TIMEOUT,
    expected_redis,
    make_topic,
    redis_state,
)
from tests.polling import wait_for
from transforms.io.kafka.live import COMMIT_INTERVAL_SECONDS
from transforms.metrics import DEAD_LETTERED

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_direct_runner")]

FIRST = 16  # messages produced before the outage


def produce(broker: str, topic: str, messages: list[Any]) -> None:
    producer = Producer({"bootstrap.servers": broker, "enable.idempotence": True})
    for key, value, headers in messages:
        producer.produce(
            topic,
            key=json.dumps(key).encode(),
            value=None if value is None else json.dumps(value).encode(),
            headers=headers,
        )
    assert producer.flush(TIMEOUT) == 0


def committed(broker: str, topic: str, group: str) -> int:
    """The number of messages the group has committed, over every partition."""
    consumer = Consumer({"bootstrap.servers": broker, "group.id": group})
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        offsets = consumer.committed(partitions, timeout=TIMEOUT)
        return sum(max(0, tp.offset) for tp in offsets)
    finally:
        consumer.close()


def dead_letters(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in folder.rglob("*")
        if path.is_file() and not path.name.startswith(".")
        for line in path.open()
    ]


@pytest.fixture
def proxy(redis_server: ServiceSpec) -> Iterator[OutageProxy]:
    with outage_proxy(redis_server.host, redis_server.port) as server:
        yield server


def test_killed_during_a_redis_outage_the_rerun_gives_the_source_tables(
    kafka_broker: ServiceSpec,
    redis_db: redis.Redis,
    make_topic: Any,  # noqa: F811
    proxy: OutageProxy,
    unique_name: str,
    tmp_path: Path,
) -> None:
    prefix = unique_name
    topic = make_topic(f"kill-{unique_name}", HISTORY.messages[:FIRST])
    group = f"g-{unique_name}"
    source = f"--source=kafka://{kafka_broker.endpoint}/{topic}?group={group}"
    sink = (
        f"--sink=redis://127.0.0.1:{proxy.port}/0?mode=state&key={prefix}:{{table}}:{{key}}"
        "&timeout=2"
    )
    log = tmp_path / "run.log"
    with log.open("wb") as output:
        run = subprocess.Popen(
            [sys.executable, "-m", "pipelines", "run", "cdc_replicate", f"{source}&live=true",
             sink, f"--dead_letter=file://{tmp_path}/dlq1"],
            stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            # The first part applied (the last first-part change of a key is in Redis).
            wait_for(lambda: len(redis_state(redis_db, prefix)) >= 5, "the first changes in Redis")
            proxy.down()
            produce(kafka_broker.endpoint, topic, HISTORY.messages[FIRST:])
            wait_for(lambda: b"is unavailable" in log.read_bytes(), "the sink to see the outage")
            # Give the reader the time to commit, if it wrongly did: nothing read after the
            # outage began may be committed while the sink cannot write it.
            time.sleep(COMMIT_INTERVAL_SECONDS + 1)
            assert committed(kafka_broker.endpoint, topic, group) <= FIRST
        finally:
            run.send_signal(signal.SIGKILL)
            run.wait(TIMEOUT)
    assert run.returncode == -signal.SIGKILL, log.read_text()
    assert not dead_letters(tmp_path / "dlq1"), log.read_text()

    proxy.up()
    rerun = run_pipeline(SPEC, [source, sink, f"--dead_letter=file://{tmp_path}/dlq2"])

    assert rerun.balanced, rerun.render()
    assert rerun.count(DEAD_LETTERED) == 0, rerun.render()
    assert not dead_letters(tmp_path / "dlq2")
    state = {name: entry["fields"] for name, entry in redis_state(redis_db, prefix).items()}
    assert state == expected_redis(prefix)
