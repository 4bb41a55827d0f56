"""Hostile records after the source: each is dead-lettered by the step it fails in, the run goes on.

Every case goes through the real pipeline or sink against the real local server, and checks the
dead letters (original bytes, step, reason) and the balance read = written + dead + dropped.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from pipelines.catalog import get_pipeline
from pipelines.devtools.services.specs import ServiceSpec
from pipelines.framework.run import RunReport, run_pipeline
from pipelines.framework.spine import load_schema
from tests.support import run_sink
from transforms.io.base import SinkContext
from transforms.io.bigquery.client import bounded_retry, ensure_table, make_client
from transforms.io.registry import make_sink
from transforms.message import Message, Origin, Record
from transforms.metrics import DEAD_LETTERED, READ, WRITTEN

PROJECT = "local-project"
TIMEOUT = 30.0
TS = "2026-11-25T10:00:00Z"


def write_lines(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def dead_letters(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in folder.glob("*.jsonl") for line in path.open()]


def by_payload(dead: list[dict[str, Any]]) -> dict[bytes, dict[str, Any]]:
    """Dead letters by their original bytes (base64 in a JSON file)."""
    return {base64.b64decode(d["payload_bytes"]): d for d in dead}


def line_bytes(row: dict[str, Any]) -> bytes:
    return json.dumps(row).encode("utf-8")


def assert_dead(
    found: dict[bytes, dict[str, Any]], row: dict[str, Any], step: str, reason: str
) -> None:
    dead = found[line_bytes(row)]
    assert (dead["step"], dead["reason"]) == (step, reason), dead["error_message"]


def test_sessionize_dead_letters_bad_keys_and_times_a_session_cannot_hold(tmp_path: Path) -> None:
    good = [{"user_id": "u1", "ts": TS}, {"user_id": 7, "ts": "0001-01-01T00:00:00Z"}]
    # (step, reason) -> rows: the key field is checked (step fields) before the sessions.
    bad = {
        ("fields", "wrong_type"): [{"user_id": ["a"], "ts": TS}, {"user_id": {"id": 1}, "ts": TS}],
        ("fields", "missing_field"): [{"user_id": None, "ts": TS}, {"ts": TS}],
        ("sessions", "bad_timestamp"): [{"user_id": "u2", "ts": "9999-12-31T23:59:59Z"}],
    }
    hostile = [row for rows in bad.values() for row in rows]
    source = write_lines(tmp_path / "in.jsonl", good + hostile)

    report = run_pipeline(
        get_pipeline("sessionize"),
        [f"--source=file://{source}", f"--sink=file://{tmp_path}/out",
         f"--dead_letter=file://{tmp_path}/dlq", "--schema=none", "--key_field=user_id",
         "--gap=30m", "--event_time_field=ts"],
    )  # fmt: skip

    assert report.balanced
    assert report.count(READ) == len(good) + len(hostile)
    assert report.count("aggregated") == len(good)
    assert report.count(WRITTEN) == len(good)  # one session each
    found = by_payload(dead_letters(tmp_path / "dlq"))
    assert len(found) == len(hostile)
    for (step, reason), rows in bad.items():
        assert report.count(f"{DEAD_LETTERED}.{reason}") == len(rows)
        for row in rows:
            assert_dead(found, row, step, reason)


@pytest.fixture
def profiles(redis_server: ServiceSpec, unique_name: str) -> Iterator[str]:
    """c1 gold, c2 without a tier, c3 with a value that is not UTF-8."""
    client = redis.Redis.from_url(redis_server.endpoint)
    client.hset(f"{unique_name}:c1", mapping={"tier": "gold"})
    client.hset(f"{unique_name}:c2", mapping={"risk": "0.5"})
    client.hset(f"{unique_name}:c3", mapping={"tier": b"\xff\xfe"})
    yield f"{redis_server.endpoint}?key={unique_name}:{{customer_id}}"
    client.delete(*client.keys(f"{unique_name}:*"), f"{unique_name}:c1")


def run_alerts(tmp_path: Path, source: Path, profiles: str) -> RunReport:
    # A %-format of a profile without the key it names raises KeyError in the rule.
    rules = """{gold: '"%(tier)s" % profile == "gold"'}"""
    return run_pipeline(
        get_pipeline("enrich_and_alert"),
        [f"--source=file://{source}", f"--profiles={profiles}", f"--rules={rules}",
         f"--sink=file://{tmp_path}/out", f"--alert_sink=file://{tmp_path}/alerts",
         f"--dead_letter=file://{tmp_path}/dlq", "--schema=none", "--event_time_field=ts"],
    )  # fmt: skip


@pytest.mark.integration
def test_enrich_and_alert_dead_letters_failing_rules_and_unreadable_profiles(
    tmp_path: Path, profiles: str
) -> None:
    rows = [{"customer_id": c, "amount": 1, "ts": TS} for c in ("c1", "c2", "c3", "c9")]
    rows.append({"customer_id": ["c1"], "amount": 2, "ts": TS})  # a list cannot be a join key
    source = write_lines(tmp_path / "in.jsonl", rows)

    report = run_alerts(tmp_path, source, profiles)

    assert report.balanced, report.render()
    assert report.count(READ) == len(rows)
    # c3's profile cannot be read: dead-lettered by enrich; the others are enriched and written.
    assert report.count("enriched") == report.count(WRITTEN) == len(rows) - 2
    found = by_payload(dead_letters(tmp_path / "dlq"))
    assert len(found) == 3
    assert_dead(found, rows[2], "enrich", "bad_reference")
    assert_dead(found, rows[4], "fields", "wrong_type")
    # c2's profile has no tier: its rule fails, the record itself is written, only its alert lost.
    assert_dead(found, rows[1], "route", "rule_error")
    assert "KeyError" in found[line_bytes(rows[1])]["error_message"]
    written = sorted(json.dumps(r["customer_id"]) for r in dead_letters(tmp_path / "out"))
    assert written == sorted(json.dumps(r["customer_id"]) for r in rows[:2] + rows[3:4])
    alerts = dead_letters(tmp_path / "alerts")
    assert [(a["customer_id"], a["alert"]) for a in alerts] == [("c1", "gold")]


@pytest.mark.integration
def test_events_to_bigquery_dead_letters_integers_over_64_bits_and_writes_the_rest(
    tmp_path: Path, bigquery_emulator: ServiceSpec, unique_name: str
) -> None:
    base = {"ts": TS, "user_id": "u1", "event_type": "click"}
    good = [{**base, "event_id": "e1", "status_code": 200},
            {**base, "event_id": "e2", "status_code": 2**63 - 1}]  # fmt: skip
    huge = [{**base, "event_id": "e3", "status_code": 2**64},
            {**base, "event_id": "e4", "status_code": -(10**400)}]  # fmt: skip
    source = write_lines(tmp_path / "in.jsonl", good + huge)
    table = f"{PROJECT}.{unique_name}.events"
    client = make_client(PROJECT, bigquery_emulator.endpoint)
    try:
        # Without --schema nothing checks integers before the sink: its table holds INT64.
        ensure_table(client, table, load_schema("builtin:events"), None, [], timeout=TIMEOUT)
        report = run_pipeline(
            get_pipeline("events_to_bigquery"),
            [f"--source=file://{source}", "--schema=none", "--event_time_field=ts",
             f"--sink=bigquery://{PROJECT}/{unique_name}.events?create=never"
             f"&endpoint={bigquery_emulator.endpoint}",
             f"--dead_letter=file://{tmp_path}/dlq"],
        )  # fmt: skip
        job = client.query(
            f"SELECT event_id, status_code FROM `{table}`",
            timeout=TIMEOUT,
            retry=bounded_retry(TIMEOUT),
            job_retry=None,
        )
        rows = sorted(tuple(row.values()) for row in job.result(timeout=TIMEOUT))
    finally:
        client.delete_dataset(
            f"{PROJECT}.{unique_name}", delete_contents=True, not_found_ok=True, timeout=TIMEOUT
        )
        client.close()

    assert report.balanced
    assert report.count(WRITTEN) == len(good)
    assert rows == [(r["event_id"], r["status_code"]) for r in good]
    found = by_payload(dead_letters(tmp_path / "dlq"))
    assert len(found) == len(huge)
    for row in huge:
        assert_dead(found, row, "sink", "sink_rejected")
        assert "64-bit" in found[line_bytes(row)]["error_message"]  # names the limit


def records_with_bad_text() -> tuple[list[Record], list[bytes]]:
    """Two good records and two whose text is not UTF-8 (as a step may make them)."""
    datas = [{"id": "a", "n": 1}, {"id": "b", "name": "\ud800"}, {"id": "c", "n": 3},
             {"id": "\udcff", "n": 4}]  # fmt: skip
    records, payloads = [], []
    for line, data in enumerate(datas, 1):
        payload = json.dumps(data).encode("utf-8")  # ASCII escapes: the original bytes
        payloads.append(payload)
        records.append(Record(data, Message(payload, {}, Origin("file", path="/in", line=line))))
    return records, [payloads[1], payloads[3]]


def check_rejected(expected: list[bytes]) -> Any:
    def check(dead: list[dict[str, Any]]) -> None:
        assert sorted(d["payload_bytes"] for d in dead) == sorted(expected)
        assert {(d["step"], d["reason"]) for d in dead} == {("sink", "sink_rejected")}

    return check


def write_and_check(uri: str) -> None:
    records, rejected = records_with_bad_text()
    sink = make_sink(uri, SinkContext(pipeline="hostile"))
    counters = run_sink(records, sink, check_rejected(rejected))
    assert counters[WRITTEN] == len(records) - len(rejected)


@pytest.mark.integration
def test_redis_sink_dead_letters_text_that_is_not_utf8(
    redis_server: ServiceSpec, unique_name: str
) -> None:
    write_and_check(f"{redis_server.endpoint}?key={unique_name}:{{id}}&mode=hash")
    client = redis.Redis.from_url(redis_server.endpoint)
    assert sorted(client.keys(f"{unique_name}:*")) == [f"{unique_name}:{k}".encode() for k in "ac"]
    client.delete(f"{unique_name}:a", f"{unique_name}:c")


@pytest.mark.integration
def test_pubsub_sink_dead_letters_text_that_is_not_utf8(
    pubsub_topic: tuple[str, str],
) -> None:
    from tests.support import pull_json

    topic, subscription = pubsub_topic
    write_and_check(f"pubsub://{topic}")
    assert sorted(m["id"] for m in pull_json(subscription, 2)) == ["a", "c"]


@pytest.mark.integration
def test_kinesis_sink_dead_letters_text_that_is_not_utf8(
    kinesis_server: ServiceSpec, unique_name: str
) -> None:
    from transforms.io.kinesis.client import StreamTarget
    from transforms.io.kinesis.client import make_client as kinesis_client

    client = kinesis_client(StreamTarget("x", "us-east-1", kinesis_server.endpoint, "kinesis://x"))
    client.create_stream(StreamName=unique_name, ShardCount=1)
    try:
        client.get_waiter("stream_exists").wait(StreamName=unique_name)
        write_and_check(
            f"kinesis://{unique_name}?region=us-east-1&endpoint={kinesis_server.endpoint}"
            "&partition_key=id"
        )
    finally:
        client.delete_stream(StreamName=unique_name)


@pytest.mark.integration
def test_kafka_sink_dead_letters_text_that_is_not_utf8(
    kafka_broker: ServiceSpec, unique_name: str
) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_broker.endpoint})
    admin.create_topics([NewTopic(unique_name, 1, 1)])[unique_name].result(timeout=TIMEOUT)
    write_and_check(f"kafka://{kafka_broker.endpoint}/{unique_name}?key=id")


def debezium(**changes: Any) -> dict[str, Any]:
    """A Postgres Debezium create of ``s.t``, with ``changes`` (``source_*`` in its source)."""
    source = {"connector": "postgresql", "db": "d", "schema": "s", "table": "t", "lsn": 100,
              "txId": 5, "ts_ms": 1_764_064_800_000, "sequence": '["90","100"]'}  # fmt: skip
    event: dict[str, Any] = {"before": None, "after": {"id": 1, "name": "a"}, "op": "c",
                             "ts_ms": 1_764_064_800_000, "source": source}  # fmt: skip
    for name, value in changes.items():
        if name.startswith("source_"):
            source[name.removeprefix("source_")] = value
        else:
            event[name] = value
    return event


def test_cdc_replicate_dead_letters_odd_envelopes_and_writes_odd_values(tmp_path: Path) -> None:
    good = [debezium(), debezium(after={"id": 2, "big": 10**400, "deep": {"a": [1, None]}})]
    bad = [debezium(source_sequence="not json"), debezium(source_sequence='[1, {"a": 2}]'),
           debezium(op="zz"), debezium(op=None), debezium(after=[1, 2]), debezium(after="x"),
           debezium(source=None), debezium(source=[1]), debezium(source_table=None),
           debezium(source_ts_ms=-(10**20))]  # fmt: skip
    source = write_lines(tmp_path / "in.jsonl", good + bad)

    report = run_pipeline(
        get_pipeline("cdc_replicate"),
        [f"--source=file://{source}", f"--sink=file://{tmp_path}/out",
         f"--dead_letter=file://{tmp_path}/dlq", "--key_columns=s.t=id"],
    )  # fmt: skip

    assert report.balanced
    assert report.count(READ) == len(good) + len(bad)
    assert report.count(WRITTEN) == len(good)
    found = by_payload(dead_letters(tmp_path / "dlq"))
    assert sorted(found) == sorted(line_bytes(row) for row in bad)
    assert {d["step"] for d in found.values()} == {"normalize"}
    rows = {row["key"]["id"]: row for row in dead_letters(tmp_path / "out")}
    assert rows[2]["row"]["big"] == 10**400
