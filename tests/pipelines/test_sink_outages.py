"""Every sink through a 10-15 s outage of its server: by default it waits it out and writes
everything; with ``attempts=2`` it gives up and dead-letters ``sink_unavailable``.

The outage is a TCP proxy in front of the real local server (`tests.outage`): while it is down,
open connections are reset and new ones refused. The Kafka sink is not here: the broker hands
its own address to clients after the first contact, so a proxy cannot cut it off; its retry
path is the same policy (`transforms.io.retry`).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from pipelines.devtools.services.specs import EXTRA_ENV, ServiceSpec
from tests.outage import OutageProxy, outage_proxy
from tests.support import pull_json, run_sink
from tests.transforms.io.test_kinesis import REGION, _stream_records, client_for
from transforms.io.base import SinkContext
from transforms.io.bigquery.client import STORAGE_EMULATOR_ENV, bounded_retry, make_client
from transforms.io.registry import make_sink
from transforms.message import Message, Origin, Record
from transforms.metrics import SINK_OUTAGE_SECONDS, SINK_RETRIES, WRITTEN
from transforms.schema import Field, Schema

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 12.0
RECORDS = 20
PROJECT = "local-project"
SCHEMA = Schema((Field("id", "INTEGER", "REQUIRED"), Field("v", "STRING")))

_DEAD: dict[str, list[dict[str, Any]]] = {}


def _keep(tag: str, dead_letters: list[dict[str, Any]]) -> None:
    _DEAD[tag] = list(dead_letters)


@dataclass
class Target:
    """A sink under test: its URI through a proxy, and the ids it holds afterwards."""

    name: str
    server: tuple[str, int]  # what the proxy forwards to
    uri: Callable[[int, str], str]  # (proxy port, extra query) -> sink URI
    written_ids: Callable[[], list[int]]
    env: dict[str, str]  # environment the client reads its endpoint from, given the proxy port
    marker: bytes | None = None  # the outage starts when a request holds this, else at once


def records() -> list[Record]:
    return [
        Record(
            {"id": i, "v": f"value-{i}"},
            Message(f"line {i}".encode(), {}, Origin("file", path="in", line=i)),
        )
        for i in range(RECORDS)
    ]


@pytest.fixture
def redis_target(redis_server: ServiceSpec, unique_name: str) -> Iterator[Target]:
    client = redis.Redis.from_url(redis_server.endpoint, decode_responses=True)

    def written() -> list[int]:
        return sorted(int(client.hget(name, "id")) for name in client.scan_iter(f"{unique_name}:*"))

    yield Target(
        "redis",
        (redis_server.host, redis_server.port),
        lambda port, query: f"redis://127.0.0.1:{port}/0?key={unique_name}:{{id}}&timeout=2{query}",
        written,
        {},
    )
    for name in client.scan_iter(f"{unique_name}:*"):
        client.delete(name)
    client.close()


@pytest.fixture
def bigquery_target(bigquery_emulator: ServiceSpec, unique_name: str) -> Iterator[Target]:
    client = make_client(PROJECT, bigquery_emulator.endpoint)
    table = f"{PROJECT}.{unique_name}_outage.rows"

    def written() -> list[int]:
        job = client.query(
            f"SELECT id FROM `{table}`", timeout=30, retry=bounded_retry(30), job_retry=None
        )
        return sorted(row["id"] for row in job.result(timeout=30, retry=bounded_retry(30)))

    grpc_host, grpc_port = EXTRA_ENV["bigquery"][STORAGE_EMULATOR_ENV].split(":")
    yield Target(
        "bigquery",
        (grpc_host, int(grpc_port)),  # the Storage Write API (gRPC), the sink's default method
        lambda port, query: (
            f"bigquery://{PROJECT}/{unique_name}_outage.rows?endpoint={bigquery_emulator.endpoint}"
            f"&storage_endpoint=127.0.0.1:{port}{query}"
        ),
        written,
        {},
        marker=b"/streams/_default",  # in the first append request: the outage hits the appends
    )
    client.delete_dataset(
        f"{PROJECT}.{unique_name}_outage", delete_contents=True, not_found_ok=True, timeout=30
    )
    client.close()


@pytest.fixture
def kinesis_target(kinesis_server: ServiceSpec, unique_name: str) -> Iterator[Target]:
    client = client_for(kinesis_server)
    client.create_stream(StreamName=unique_name, ShardCount=1)
    url = urlsplit(kinesis_server.endpoint)

    def written() -> list[int]:
        return sorted(data["id"] for data, _ in _stream_records(client, unique_name))

    yield Target(
        "kinesis",
        (url.hostname or "127.0.0.1", url.port or 5055),
        lambda port, query: (
            f"kinesis://{unique_name}?region={REGION}&endpoint=http://127.0.0.1:{port}&timeout=2{query}"
        ),
        written,
        {},
    )
    client.delete_stream(StreamName=unique_name)


@pytest.fixture
def pubsub_target(pubsub_emulator: ServiceSpec, pubsub_topic: tuple[str, str]) -> Iterator[Target]:
    topic, subscription = pubsub_topic
    host, port = pubsub_emulator.endpoint.rsplit(":", 1)

    def written() -> list[int]:
        return sorted({message["id"] for message in pull_json(subscription, RECORDS, patience=3)})

    yield Target(
        "pubsub",
        (host, int(port)),
        lambda unused_port, query: f"pubsub://{topic}?timeout=3{query}",
        written,
        {"PUBSUB_EMULATOR_HOST": "127.0.0.1:{port}"},
    )


TARGETS = ["redis_target", "bigquery_target", "kinesis_target", "pubsub_target"]


def _up_after_outage(proxy: OutageProxy, timer: threading.Timer) -> None:
    """Starts ``timer`` (which brings the proxy up) once the proxy went down."""
    proxy.went_down.wait()
    timer.start()


def write_through_outage(
    target: Target, query: str, ends: bool, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Writes `records` while the server is unreachable; it comes back after OUTAGE_SECONDS
    (``ends``) or only once the write is over. Returns the counters and the dead letters."""
    tag = f"{target.name}{query}"
    with outage_proxy(*target.server) as proxy, monkeypatch.context() as env:
        for name, value in target.env.items():
            env.setenv(name, value.format(port=proxy.port))
        sink = make_sink(target.uri(proxy.port, query), SinkContext("outage", schema=SCHEMA))
        timer = threading.Timer(OUTAGE_SECONDS, proxy.up)
        if target.marker is None:
            proxy.down()
            if ends:
                timer.start()
        else:
            proxy.down_on(target.marker)
            if ends:
                threading.Thread(target=_up_after_outage, args=(proxy, timer), daemon=True).start()
        try:
            counters = run_sink(records(), sink, functools.partial(_keep, tag))
        finally:
            timer.cancel()
            proxy.up()
    return counters, _DEAD.pop(tag)


@pytest.mark.parametrize("fixture", TARGETS)
def test_by_default_a_sink_waits_out_an_outage_and_writes_everything(
    fixture: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target: Target = request.getfixturevalue(fixture)
    caplog.set_level(logging.INFO, logger="transforms.io.retry")

    counters, dead = write_through_outage(target, "", ends=True, monkeypatch=monkeypatch)

    assert dead == []
    assert counters[WRITTEN] == RECORDS
    assert target.written_ids() == list(range(RECORDS))
    messages = [record.getMessage() for record in caplog.records]
    down = [m for m in messages if "is unavailable" in m]
    back = [m for m in messages if "is available again" in m]
    # One warning when the outage starts and one line when it ends, per request held back.
    assert down and len(down) == len(back), messages
    # The same outage as metrics: the retries, and the seconds the recovery line reports.
    assert counters[SINK_RETRIES] >= len(down)
    logged = sum(float(re.findall(r"after ([0-9.]+) s", m)[0]) for m in back)
    assert abs(counters.get(SINK_OUTAGE_SECONDS, 0) - logged) <= len(back)


@pytest.mark.parametrize("fixture", TARGETS)
def test_with_attempts_a_sink_gives_up_and_dead_letters_sink_unavailable(
    fixture: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    target: Target = request.getfixturevalue(fixture)

    counters, dead = write_through_outage(
        target, "&attempts=2", ends=False, monkeypatch=monkeypatch
    )

    assert {letter["reason"] for letter in dead} == {"sink_unavailable"}
    assert counters[SINK_RETRIES] >= 1  # each request was sent twice before giving up
    written = counters.get(WRITTEN, 0)
    assert written + len(dead) == RECORDS  # the balance holds
    assert sorted(letter["payload_bytes"] for letter in dead) == sorted(
        {f"line {i}".encode() for i in range(RECORDS)}
        - {f"line {i}".encode() for i in target.written_ids()}
    )
