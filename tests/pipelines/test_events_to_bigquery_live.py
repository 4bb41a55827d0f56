"""events_to_bigquery live: Pub/Sub emulator -> streaming DirectRunner -> BigQuery emulator."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from pipelines.devtools.services.specs import BIGQUERY_PROJECT
from tests.pipelines.live_bigquery import rows, run_live
from transforms.dead_letter import DEAD_LETTER_SCHEMA
from transforms.io.bigquery.client import ensure_table, make_client
from transforms.schema import Schema

pytestmark = pytest.mark.integration

PROJECT = BIGQUERY_PROJECT


def event(i: int, **changes: Any) -> bytes:
    base = {"event_id": f"e{i}", "ts": time.time(), "user_id": f"u{i % 4}",
            "event_type": "click", "status_code": 200, "latency_ms": 2.5}  # fmt: skip
    return json.dumps({**base, **changes}).encode()


def test_pubsub_to_bigquery_rows_land_and_failures_are_dead_lettered(
    bigquery_emulator: Any, pubsub_topic: tuple[str, str], unique_name: str
) -> None:
    topic, subscription = pubsub_topic
    client = make_client(PROJECT, bigquery_emulator.endpoint)
    events = f"{PROJECT}.{unique_name}.events"
    dead = f"{PROJECT}.{unique_name}.dead_letter"
    good = [(event(i), {"origin": "test", "n": str(i)}) for i in range(8)]
    bad = [(b"{not json", {"n": "bad-json"}), (event(90, status_code="x"), {"n": "bad-type"}),
           (event(91, ts="later"), {"n": "bad-ts"})]  # fmt: skip
    endpoint = f"endpoint={bigquery_emulator.endpoint}"

    ids, _ = run_live(
        [f"--source=pubsub://{subscription}", "--schema=builtin:events",
         f"--sink=bigquery://{PROJECT}:{unique_name}.events?metadata=true&{endpoint}",
         f"--dead_letter=bigquery://{PROJECT}:{unique_name}.dead_letter?{endpoint}"],
        topic,
        good + bad,
        lambda counters: counters.get("written", 0) >= len(good)
        and counters.get("written_dead_letters", 0) >= len(bad),
        lambda: b"{}",
    )  # fmt: skip

    landed = rows(client, events)
    assert sorted(r["event_id"] for r in landed) == sorted(f"e{i}" for i in range(8))
    # metadata=true: each row carries its message's id, publish time and attributes.
    by_event = {r["event_id"]: r for r in landed}
    for (payload, attrs), message_id in zip(good, ids[: len(good)], strict=True):
        row = by_event[json.loads(payload)["event_id"]]
        assert (row["_meta_system"], row["_meta_message_id"]) == ("pubsub", message_id)
        assert row["_meta_attributes"] == attrs
        assert row["_meta_publish_time"] is not None and row["_meta_offset"] is None
    table = client.get_table(events)
    assert table.time_partitioning is not None and table.time_partitioning.field == "ts"
    dead_rows = {
        next(a["value"] for a in r["attributes"] if a["key"] == "n"): r for r in rows(client, dead)
    }
    assert {"bad-json", "bad-type", "bad-ts"} <= set(dead_rows)
    expected = {"bad-json": "invalid_json", "bad-type": "schema", "bad-ts": "bad_timestamp"}
    for (payload, attrs), message_id in zip(bad, ids[len(good) :], strict=True):
        row = dead_rows[attrs["n"]]
        assert row["reason"] == expected[attrs["n"]]
        assert bytes(row["payload_bytes"]) == payload
        assert row["source"]["system"] == "pubsub"
        assert row["source"]["message_id"] == message_id
        assert row["source"]["publish_time"]


def test_rows_the_table_rejects_are_dead_lettered_with_their_bytes(
    bigquery_emulator: Any, pubsub_topic: tuple[str, str], unique_name: str, tmp_path: Path
) -> None:
    """No schema declared: Parse passes any object, the existing table rejects bad types."""
    topic, subscription = pubsub_topic
    client = make_client(PROJECT, bigquery_emulator.endpoint)
    table = f"{PROJECT}.{unique_name}.strict"
    schema = Schema.from_bigquery([{"name": "id", "type": "STRING"},
                                   {"name": "n", "type": "INTEGER"}])  # fmt: skip
    ensure_table(client, table, schema)
    dead = f"{PROJECT}.{unique_name}.dead_letter"
    ensure_table(client, dead, DEAD_LETTER_SCHEMA)
    payloads = [json.dumps(row).encode() for row in ({"id": "a", "n": 1}, {"id": "b", "n": "abc"},
                                                     {"id": "c", "n": 3})]  # fmt: skip
    endpoint = f"endpoint={bigquery_emulator.endpoint}"

    run_live(
        [f"--source=pubsub://{subscription}", "--schema=none", "--event_time_field=none",
         f"--sink=bigquery://{PROJECT}:{unique_name}.strict?create=never&{endpoint}",
         f"--dead_letter=bigquery://{PROJECT}:{unique_name}.dead_letter?create=never&{endpoint}"],
        topic,
        [(p, {}) for p in payloads],
        lambda counters: counters.get("written", 0) >= 2
        and counters.get("written_dead_letters", 0) >= 1,
        lambda: b"{}",
    )  # fmt: skip

    assert sorted(r["id"] for r in rows(client, table)) == ["a", "c"]
    (rejected,) = [r for r in rows(client, dead) if r["reason"] == "sink_rejected"]
    assert base64.b64encode(bytes(rejected["payload_bytes"])) == base64.b64encode(payloads[1])
    assert rejected["step"] == "sink"
    assert rejected["source"]["system"] == "pubsub"
