"""cdc_replicate from the real Kafka broker into the real BigQuery emulator and Redis.

A small model of a Postgres database (`SourceDb`) runs inserts, updates, deletes and a
primary-key change on two tables and writes, as Debezium's Postgres connector does (JSON
converter, schemas off), one event per change keyed by the Debezium JSON key, a tombstone after
every delete, snapshot reads first, and an at-least-once redelivery of a stretch of events. The
events go to a 3-partition topic (one key stays in one partition). The expected replica is the
model's final tables (and, for deleted keys, the sequence of their delete): it is computed from
the database the events describe, not from the events or the code under test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from google.cloud import bigquery

from pipelines.catalog import get_pipeline
from pipelines.devtools.services.specs import ServiceSpec
from pipelines.framework.run import RunReport, run_pipeline
from transforms.io.bigquery.client import bounded_retry, make_client
from transforms.metrics import DEAD_LETTERED, READ

pytestmark = pytest.mark.integration

SPEC = get_pipeline("cdc_replicate")
PROJECT = "local-project"
CUSTOMERS = "inventory.customers"
ORDERS = "inventory.orders"
PARTITIONS = 3
TIMEOUT = 30.0

Key = str  # a primary key as compact JSON with sorted keys: {"id":1}


def key_text(key: dict[str, Any]) -> Key:
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def seq_text(sequence: tuple[int, ...]) -> str:
    """A sequence as the sinks store it: 20-digit zero-padded parts joined by dots."""
    return ".".join(f"{part:020d}" for part in sequence)


class SourceDb:
    """A Postgres database in miniature that writes the Debezium events of its changes.

    ``rows`` is the database's content; ``last`` is, per (table, key), the (commit LSN, LSN) of
    the key's last change and whether it was a delete; ``messages`` are the Kafka messages
    (Debezium JSON key, value or ``None`` for a tombstone, headers) in the order Debezium writes
    them.
    """

    KEY_COLUMNS = {CUSTOMERS: ("id",), ORDERS: ("order_id",)}

    def __init__(self) -> None:
        self.rows: dict[str, dict[Key, dict[str, Any]]] = {CUSTOMERS: {}, ORDERS: {}}
        self.last: dict[tuple[str, Key], tuple[tuple[int, int], bool]] = {}
        self.messages: list[tuple[dict[str, Any], dict[str, Any] | None, list[Any]]] = []
        self._lsn = 24_000_000
        self._commit: int | None = None
        self._tx = 550
        self._ts = int(time.time() * 1000) - 60_000

    def _key(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        return {column: row[column] for column in self.KEY_COLUMNS[table]}

    def begin(self) -> None:
        """Starts a transaction: its events share one commit LSN."""
        self._lsn += 64
        self._commit = self._lsn
        self._tx += 1

    def _emit(
        self,
        op: str,
        table: str,
        key: dict[str, Any],
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        headers: list[Any] | None = None,
        snapshot: bool = False,
    ) -> None:
        self._lsn += 8
        self._ts += 250
        commit = 0 if snapshot else self._commit
        assert commit is not None, "begin() a transaction first"
        schema, name = table.split(".")
        source = {
            "version": "2.7.3.Final",
            "connector": "postgresql",
            "name": "dbserver1",
            "ts_ms": self._ts,
            "snapshot": "true" if snapshot else "false",
            "db": "shop",
            "sequence": json.dumps([None if snapshot else str(commit), str(self._lsn)]),
            "schema": schema,
            "table": name,
            "txId": self._tx,
            "lsn": self._lsn,
            "xmin": None,
        }
        value = {
            "before": before,
            "after": after,
            "source": source,
            "op": op,
            "ts_ms": self._ts + 7,
            "transaction": None,
        }
        self.messages.append((key, value, headers or []))
        self.last[(table, key_text(key))] = ((commit, self._lsn), op == "d")

    def snapshot(self, table: str, row: dict[str, Any]) -> None:
        key = self._key(table, row)
        self.rows[table][key_text(key)] = dict(row)
        self._emit("r", table, key, None, dict(row), snapshot=True)

    def insert(self, table: str, row: dict[str, Any]) -> None:
        key = self._key(table, row)
        assert key_text(key) not in self.rows[table]
        self.rows[table][key_text(key)] = dict(row)
        self._emit("c", table, key, None, dict(row))

    def update(self, table: str, key: dict[str, Any], **changes: Any) -> None:
        row = {**self.rows[table][key_text(key)], **changes}
        self.rows[table][key_text(key)] = row
        self._emit("u", table, key, None, dict(row))  # REPLICA IDENTITY DEFAULT: no before

    def _delete_events(self, table: str, key: dict[str, Any], headers: list[Any]) -> None:
        old = self.rows[table].pop(key_text(key))
        before = {column: (value if column in key else None) for column, value in old.items()}
        self._emit("d", table, key, before, None, headers)
        self.messages.append((key, None, []))  # the tombstone, for log compaction

    def delete(self, table: str, key: dict[str, Any]) -> None:
        self._delete_events(table, key, [])

    def change_key(self, table: str, old: dict[str, Any], **new_key: Any) -> None:
        """UPDATE ... SET <key column> = ...: Debezium writes delete, tombstone, create."""
        row = {**self.rows[table][key_text(old)], **new_key}
        new = self._key(table, row)
        self._delete_events(table, old, [("__debezium.newkey", json.dumps(new).encode())])
        self.rows[table][key_text(new)] = row
        headers = [("__debezium.oldkey", json.dumps(old).encode())]
        self._emit("c", table, new, None, dict(row), headers)


def build_history() -> SourceDb:
    db = SourceDb()
    for n, name in enumerate(["Sally", "George", "Edward", "Anne"], start=1):
        db.snapshot(CUSTOMERS, {"id": n, "name": name, "email": f"{name.lower()}@acme.com",
                                "phone": None, "vip": False})  # fmt: skip
    db.snapshot(ORDERS, {"order_id": 100, "customer_id": 1, "total": 12.5, "items": ["a"]})

    db.begin()
    db.insert(CUSTOMERS, {"id": 5, "name": "Zoë", "email": "zoe@acme.com", "phone": "+33 1",
                          "vip": True})  # fmt: skip
    db.insert(ORDERS, {"order_id": 101, "customer_id": 5, "total": 3.0, "items": ["b", "c"]})
    db.begin()
    db.update(CUSTOMERS, {"id": 1}, email="sally@example.org")
    db.update(ORDERS, {"order_id": 100}, total=20.25, items=["a", "d"])
    db.begin()
    db.delete(CUSTOMERS, {"id": 3})
    db.insert(ORDERS, {"order_id": 102, "customer_id": 2, "total": 7.75, "items": []})
    db.begin()
    db.change_key(CUSTOMERS, {"id": 4}, id=40)  # primary-key change 4 -> 40
    db.begin()
    db.update(CUSTOMERS, {"id": 2}, phone="+1 555", vip=True)
    db.update(CUSTOMERS, {"id": 1}, name="Sally Ann")
    db.delete(ORDERS, {"order_id": 101})
    db.begin()
    db.change_key(ORDERS, {"order_id": 102}, order_id=103)
    db.update(ORDERS, {"order_id": 100}, customer_id=2)
    db.begin()
    db.delete(CUSTOMERS, {"id": 5})
    db.begin()
    # Customer 5 re-created after its delete.
    db.insert(
        CUSTOMERS, {"id": 5, "name": "Zoe", "email": "zoe@new.org", "phone": None, "vip": False}
    )
    db.update(CUSTOMERS, {"id": 40}, email="anne@new.org", name="Anne Kretschmär")
    db.begin()
    db.update(CUSTOMERS, {"id": 2}, phone=None)  # a column set back to NULL

    # At-least-once: a connector restart redelivers a stretch of events (tombstones included),
    # and one event is written twice in a row.
    db.messages[7:7] = [db.messages[6]]
    db.messages += db.messages[9:21]
    return db


HISTORY = build_history()


def expected_live() -> dict[str, dict[Key, dict[str, Any]]]:
    return {table: dict(rows) for table, rows in HISTORY.rows.items()}


def expected_deleted() -> dict[str, dict[Key, str]]:
    """Per table, the keys whose last change is a delete, and that delete's sequence."""
    deleted: dict[str, dict[Key, str]] = {CUSTOMERS: {}, ORDERS: {}}
    for (table, key), (sequence, is_delete) in HISTORY.last.items():
        if is_delete:
            deleted[table][key] = seq_text(sequence)
    return deleted


def test_the_history_covers_what_the_issue_asks() -> None:
    """The model's history has every kind of event the replication has to get right."""
    values = [value for _, value, _ in HISTORY.messages]
    ops = [value["op"] for value in values if value is not None]
    assert {"r", "c", "u", "d"} <= set(ops)
    assert values.count(None) >= 4  # tombstones
    texts = [json.dumps(value, sort_keys=True) for value in values if value is not None]
    assert len(texts) > len(set(texts))  # duplicates
    deleted = expected_deleted()
    assert '{"id":4}' in deleted[CUSTOMERS] and '{"id":40}' in HISTORY.rows[CUSTOMERS]
    assert '{"order_id":102}' in deleted[ORDERS] and '{"order_id":103}' in HISTORY.rows[ORDERS]
    assert '{"id":5}' in HISTORY.rows[CUSTOMERS]  # deleted, then re-created


# --------------------------------------------------------------------------------------------
# Kafka


Messages = list[tuple[dict[str, Any], dict[str, Any] | None, list[Any]]]


@pytest.fixture
def make_topic(kafka_broker: ServiceSpec) -> Iterator[Any]:
    """Creates 3-partition topics holding given messages; deletes them afterwards."""
    admin = AdminClient({"bootstrap.servers": kafka_broker.endpoint})
    created: list[str] = []

    def make(name: str, messages: Messages) -> str:
        new = NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)
        admin.create_topics([new])[name].result(TIMEOUT)
        created.append(name)
        partitions: dict[str, set[int]] = {}

        def delivered(error: Any, message: Any) -> None:
            assert error is None, error
            partitions.setdefault(message.key().decode(), set()).add(message.partition())

        config = {"bootstrap.servers": kafka_broker.endpoint, "enable.idempotence": True}
        producer = Producer(config)
        for key, value, headers in messages:
            producer.produce(
                name,
                key=json.dumps(key).encode(),  # the default partitioner hashes the key
                value=None if value is None else json.dumps(value).encode(),
                headers=headers,
                on_delivery=delivered,
            )  # no timestamp: the broker keeps recent records only
        assert producer.flush(TIMEOUT) == 0
        assert sum(map(len, partitions.values())) == len(partitions)  # one partition per key
        assert len(set().union(*partitions.values())) > 1  # keys spread over partitions
        return name

    yield make
    for name in created:
        admin.delete_topics([name])[name].result(TIMEOUT)


@pytest.fixture
def topic(make_topic: Any, unique_name: str) -> str:
    """A 3-partition topic holding the whole history."""
    return make_topic(f"cdc-{unique_name}", HISTORY.messages)


def source(kafka_broker: ServiceSpec, topic: str, group: str) -> str:
    return f"--source=kafka://{kafka_broker.endpoint}/{topic}?group={group}"


def check_report(report: RunReport, dlq: Path) -> None:
    """The run read every message, dead-lettered none and accounts for each one."""
    tombstones = sum(value is None for _, value, _ in HISTORY.messages)
    changes = len(HISTORY.messages) - tombstones
    assert report.balanced, report.render()
    assert report.count(READ) == len(HISTORY.messages), report.render()
    assert report.count("dropped.tombstone") == tombstones, report.render()
    assert report.count(DEAD_LETTERED) == 0, report.render()
    assert not [line for path in dlq.rglob("*") if path.is_file() for line in path.open()]
    # At least each key's last change is applied; redeliveries never are.
    assert report.count("applied") >= len(HISTORY.last), report.render()
    dropped = report.count("dropped.cdc_duplicate") + report.count("dropped.cdc_stale")
    assert report.count("applied") + dropped == changes, report.render()
    assert dropped >= changes - len({json.dumps(v, sort_keys=True) for _, v, _ in
                                     HISTORY.messages if v is not None})  # fmt: skip


# --------------------------------------------------------------------------------------------
# BigQuery replica


@pytest.fixture
def bq(bigquery_emulator: ServiceSpec) -> Iterator[bigquery.Client]:
    client = make_client(PROJECT, bigquery_emulator.endpoint)
    yield client
    client.close()


def replica(client: bigquery.Client, dataset: str, table: str, where: str) -> list[Any]:
    job = client.query(
        f"SELECT key, row, _sequence FROM `{PROJECT}.{dataset}.{table}` WHERE {where}",
        timeout=TIMEOUT,
        retry=bounded_retry(TIMEOUT),
        job_retry=None,
    )
    return list(job.result(timeout=TIMEOUT, retry=bounded_retry(TIMEOUT)))


def test_kafka_history_to_the_bigquery_replica_gives_the_source_tables(
    kafka_broker: ServiceSpec,
    bigquery_emulator: ServiceSpec,
    bq: bigquery.Client,
    topic: str,
    unique_name: str,
    tmp_path: Path,
) -> None:
    dataset = f"{unique_name}_cdc"
    sink = (
        f"--sink=bigquery-replica://{PROJECT}:{dataset}?tables={CUSTOMERS},{ORDERS}"
        f"&endpoint={bigquery_emulator.endpoint}"
    )
    try:
        report = run_pipeline(
            SPEC,
            [source(kafka_broker, topic, f"g-{unique_name}"), sink,
             f"--dead_letter=file://{tmp_path}/dlq"],
        )  # fmt: skip

        check_report(report, tmp_path / "dlq")
        names = {CUSTOMERS: "inventory_customers", ORDERS: "inventory_orders"}
        live = {
            table: {row["key"]: row["row"] for row in replica(bq, dataset, name, "NOT _deleted")}
            for table, name in names.items()
        }
        assert live == expected_live()
        tombstones = {
            table: {row["key"]: row["_sequence"] for row in replica(bq, dataset, name, "_deleted")}
            for table, name in names.items()
        }
        assert tombstones == expected_deleted()
        # Each live row reflects its key's last change.
        sequences = {
            (table, row["key"]): row["_sequence"]
            for table, name in names.items()
            for row in replica(bq, dataset, name, "NOT _deleted")
        }
        assert sequences == {
            where: seq_text(sequence)
            for where, (sequence, is_delete) in HISTORY.last.items()
            if not is_delete
        }
    finally:
        bq.delete_dataset(
            f"{PROJECT}.{dataset}",
            delete_contents=True,
            not_found_ok=True,
            timeout=TIMEOUT,
            retry=bounded_retry(TIMEOUT),
        )


# --------------------------------------------------------------------------------------------
# Redis latest state


def redis_text(value: Any) -> str:
    """A column value as the Redis state hash holds it: strings as is, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, separators=(",", ":"))


def expected_redis(prefix: str) -> dict[str, dict[str, str]]:
    state = {}
    for (table, key), (sequence, is_delete) in HISTORY.last.items():
        name = f"{prefix}:{table}:{key}"
        if is_delete:
            state[name] = {"_sequence": seq_text(sequence), "_deleted": "1"}
        else:
            row = HISTORY.rows[table][key]
            fields = {column: redis_text(v) for column, v in row.items() if v is not None}
            state[name] = {**fields, "_sequence": seq_text(sequence)}
    return state


def redis_state(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Every key under the prefix: its type, its hash, and whether it expires."""
    state = {}
    for name in client.scan_iter(f"{prefix}:*"):
        state[name] = {
            "type": client.type(name),
            "fields": client.hgetall(name),
            "expires": client.ttl(name) > 0,
        }
    return state


def test_kafka_history_to_redis_state_then_a_replay_changes_nothing(
    kafka_broker: ServiceSpec,
    redis_server: ServiceSpec,
    redis_db: redis.Redis,
    topic: str,
    make_topic: Any,
    unique_name: str,
    tmp_path: Path,
) -> None:
    prefix = unique_name
    sink = f"--sink={redis_server.endpoint}?mode=state&key={prefix}:{{table}}:{{key}}"

    first = run_pipeline(
        SPEC,
        [source(kafka_broker, topic, f"g1-{unique_name}"), sink,
         f"--dead_letter=file://{tmp_path}/dlq1"],
    )  # fmt: skip

    check_report(first, tmp_path / "dlq1")
    before = redis_state(redis_db, prefix)
    assert {name: entry["fields"] for name, entry in before.items()} == expected_redis(prefix)
    assert all(entry["type"] == "hash" for entry in before.values())
    # Delete markers expire (delete_ttl); live rows do not (no ttl given).
    assert {name for name, entry in before.items() if entry["expires"]} == {
        name for name, entry in before.items() if "_deleted" in entry["fields"]
    }

    # The first group committed its offsets after the writes: a rerun reads nothing.
    rerun = run_pipeline(
        SPEC,
        [source(kafka_broker, topic, f"g1-{unique_name}"), sink,
         f"--dead_letter=file://{tmp_path}/dlq1b"],
    )  # fmt: skip
    assert rerun.balanced and rerun.count(READ) == 0, rerun.render()
    assert redis_state(redis_db, prefix) == before

    # The same topic read again by a new group: the whole history replayed.
    replay = run_pipeline(
        SPEC,
        [source(kafka_broker, topic, f"g2-{unique_name}"), sink,
         f"--dead_letter=file://{tmp_path}/dlq2"],
    )  # fmt: skip

    check_report(replay, tmp_path / "dlq2")
    assert redis_state(redis_db, prefix) == before

    # An old stretch alone produced again to a new topic: the pipeline's own state is fresh, so
    # it passes these changes on, and only the sink's compare-and-set keeps them out (without
    # it, customer 5 would be the deleted Zoë again, order 100 would lose its last update...).
    stretch = HISTORY.messages[:16]
    old = make_topic(f"cdc-{unique_name}-old", stretch)
    stale = run_pipeline(
        SPEC,
        [source(kafka_broker, old, f"g3-{unique_name}"), sink,
         f"--dead_letter=file://{tmp_path}/dlq3"],
    )  # fmt: skip

    assert stale.balanced and stale.count(READ) == len(stretch), stale.render()
    assert stale.count(DEAD_LETTERED) == 0, stale.render()
    assert stale.count("applied") > 0, stale.render()
    assert redis_state(redis_db, prefix) == before
