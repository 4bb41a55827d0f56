"""cdc_replicate end to end: fixture events in a file or a Kafka topic, the final tables out.

The input is the Debezium and Datastream fixtures of tests/fixtures/cdc (with tombstones, a
duplicate, a logical decoding message, a truncate and bad records); the expected final tables
and dead letters are worked out by hand below. Records are read in file or offset order but
Beam does not keep that order per key, so only what order cannot change is asserted: the final
tables, the dead letters, tombstones and messages dropped, and the balance.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from pipelines.catalog import get_pipeline
from pipelines.devtools.services.specs import ServiceSpec
from pipelines.framework.options import OptionError
from pipelines.framework.run import build_pipeline, run_pipeline
from transforms.metrics import DEAD_LETTERED, READ

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cdc"
CUSTOMERS = "inventory.customers"
SPEC = get_pipeline("cdc_replicate")


def fixture(name: str) -> tuple[Any, Any]:
    """Returns a fixture's Kafka key and value."""
    document = json.loads((FIXTURES / f"{name}.json").read_text())
    return document["key"], document["value"]


def customer_1006() -> tuple[Any, Any]:
    """A create after the truncate: the create fixture, as id 1006 at a later LSN."""
    _, value = fixture("debezium_postgres_create")
    after = {**value["after"], "id": 1006, "email": "kim@noanswer.org"}
    source = {**value["source"], "lsn": 24023470, "sequence": '["24023456","24023470"]'}
    return {"id": 1006}, {**value, "after": after, "source": source}


# (Kafka key, value or None for a tombstone), in source order, with what happens to each.
HISTORY: list[tuple[Any, Any]] = [
    fixture("debezium_postgres_snapshot_read"),  # 1001 (0, 23979776): removed by the truncate
    fixture("debezium_postgres_create"),  # 1005
    fixture("debezium_postgres_update_schemas"),  # 1005 updated
    fixture("debezium_postgres_create"),  # redelivered: duplicate or stale
    fixture("debezium_postgres_delete"),  # 1005 deleted
    fixture("debezium_postgres_tombstone"),  # dropped.tombstone
    fixture("debezium_postgres_message"),  # dropped.cdc_message
    fixture("datastream_postgres_insert"),  # public.order_lines (77, 1)
    fixture("debezium_postgres_truncate"),  # inventory.customers truncated at 24023456
    customer_1006(),  # 1006 after the truncate
]
EXPECTED_TABLES = {
    CUSTOMERS: {
        '{"id":1006}': {"id": 1006, "first_name": "Anne", "last_name": "Kretchmar",
                        "email": "kim@noanswer.org"},
    },
    "public.order_lines": {
        '{"line":1,"order_id":77}': {"order_id": 77, "line": 1, "sku": "X-1", "qty": 2},
    },
}  # fmt: skip


def bad_lines() -> list[bytes]:
    _, create = fixture("debezium_postgres_create")
    orders = {**create, "source": {**create["source"], "table": "orders"}}
    return [
        b"{not json",  # invalid_json
        json.dumps({**create, "op": "x"}).encode(),  # cdc_unknown_op
        json.dumps(orders).encode(),  # cdc_no_key: no key declared, no message key
    ]


def write_changes(path: Path) -> int:
    """Writes the history as JSON Lines (a tombstone is an empty line); returns the line count."""
    lines = [b"" if value is None else json.dumps(value).encode() for _, value in HISTORY]
    lines.insert(5, b"null")  # a tombstone as a JSON null
    lines += bad_lines()
    path.write_bytes(b"\n".join(lines) + b"\n")
    return len(lines)


def final_tables(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    tables: dict[str, dict[str, Any]] = {}
    for row in rows:
        assert row["op"] == "upsert"
        key = json.dumps(row["key"], sort_keys=True, separators=(",", ":"))
        tables.setdefault(row["table"], {})[key] = row["row"]
    return tables


def read_jsonl(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.open()]


def test_file_run_writes_the_final_tables_and_balances(tmp_path: Path) -> None:
    source = tmp_path / "changes.jsonl"
    count = write_changes(source)
    out, dlq = tmp_path / "out", tmp_path / "dlq"

    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", "cdc_replicate", f"--source=file://{source}",
         f"--sink=file://{out}", f"--dead_letter=file://{dlq}",
         f"--key_columns={CUSTOMERS}=id"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert final_tables(read_jsonl(out)) == EXPECTED_TABLES
    dead = read_jsonl(dlq)
    assert sorted(d["reason"] for d in dead) == ["cdc_no_key", "cdc_unknown_op", "invalid_json"]
    assert {d["step"] for d in dead} == {"parse", "normalize"}
    report = result.stdout
    assert re.search(r"^  read +(\d+)$", report, re.M)[1] == str(count)  # type: ignore[index]
    assert "tombstone: 2" in report and "cdc_message: 1" in report
    assert re.search(
        r"read \d+ = applied \d+ \+ dead_lettered \(input\) \d+ \+ dropped \d+: balanced", report
    )


def test_parquet_final_tables_keep_key_and_row_as_json(tmp_path: Path) -> None:
    source = tmp_path / "changes.jsonl"
    count = write_changes(source)
    out = tmp_path / "out"

    report = run_pipeline(
        SPEC,
        [f"--source=file://{source}", f"--sink=file://{out}?format=parquet",
         f"--dead_letter=file://{tmp_path}/dlq", f"--key_columns={CUSTOMERS}=id"],
    )  # fmt: skip

    assert report.balanced
    assert report.count(READ) == count and report.count(DEAD_LETTERED) == 3
    rows = [row for path in out.glob("*.parquet") for row in pq.read_table(path).to_pylist()]
    for row in rows:
        row["key"], row["row"] = json.loads(row["key"]), json.loads(row["row"])
    assert final_tables(rows) == EXPECTED_TABLES
    assert {tuple(row["sequence"]) for row in rows if row["table"] == CUSTOMERS} == {
        (24023456, 24023470)
    }


@pytest.mark.parametrize(
    ("option", "message"),
    [("--key_columns=inventory.customers", "--key_columns"),
     ("--delete_retention=0s", "--delete_retention must be positive"),
     ("--format=maxwell", "invalid choice")],
)  # fmt: skip
def test_bad_options_fail_before_the_pipeline_is_built(
    tmp_path: Path, option: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "changes.jsonl"
    write_changes(source)
    argv = [f"--source=file://{source}", f"--sink=file://{tmp_path}/o",
            f"--dead_letter=file://{tmp_path}/d", option]  # fmt: skip
    with pytest.raises((OptionError, SystemExit)) as raised:
        build_pipeline(SPEC, argv)
    assert message in str(raised.value) + capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.integration
def test_kafka_keys_and_tombstones_need_no_declared_keys(
    kafka_broker: ServiceSpec, tmp_path: Path
) -> None:
    topic = f"cdc-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": kafka_broker.endpoint})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result()
    producer = Producer({"bootstrap.servers": kafka_broker.endpoint})
    for key, value in HISTORY:
        producer.produce(
            topic,
            key=None if key is None else json.dumps(key).encode(),
            value=None if value is None else json.dumps(value).encode(),
        )
    assert producer.flush(30) == 0

    report = run_pipeline(
        SPEC,
        [f"--source=kafka://{kafka_broker.endpoint}/{topic}", f"--sink=file://{tmp_path}/out",
         f"--dead_letter=file://{tmp_path}/dlq"],
    )  # fmt: skip

    assert report.balanced
    assert report.count(READ) == len(HISTORY)
    assert report.count(DEAD_LETTERED) == 0
    assert report.count("dropped.tombstone") == 1
    # A Kafka source is bounded here, so the file sink gets the final tables.
    assert final_tables(read_jsonl(tmp_path / "out")) == EXPECTED_TABLES


def run_file_replica(
    tmp_path: Path, lines: list[bytes]
) -> tuple[list[Any], list[Any], dict[str, int]]:
    """Runs a file -> file replica of ``lines``.

    Returns:
        ``(final rows, dead letters, counters)``.
    """
    source = tmp_path / "changes.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    out, dlq = tmp_path / "out", tmp_path / "dlq"
    report = run_pipeline(
        SPEC,
        [f"--source=file://{source}", f"--sink=file://{out}", f"--dead_letter=file://{dlq}",
         f"--key_columns={CUSTOMERS}=id", "--event_time_field=source.ts_ms"],
    )  # fmt: skip
    assert report.balanced, report.render()
    return read_jsonl(out), read_jsonl(dlq), report.counters


def test_a_long_history_gives_each_keys_latest_row_and_counts_what_it_drops(
    tmp_path: Path,
) -> None:
    history = [b"" if value is None else json.dumps(value).encode() for _, value in HISTORY]
    # Many versions of many customers over several blocks, redelivered and out of order.
    _, create = fixture("debezium_postgres_create")
    rng = random.Random(4)
    lsn = 24023500
    changes = []
    for _ in range(2500):
        lsn += rng.randint(1, 9)
        key = rng.randint(1, 300)
        op = rng.choice(["c", "u", "u", "d"])
        row = {**create["after"], "id": key, "email": f"{lsn}@example.com"}
        source = {**create["source"], "lsn": lsn, "sequence": json.dumps([str(lsn - 1), str(lsn)])}
        event = {**create, "op": op, "source": source, "before": row if op == "d" else None,
                 "after": None if op == "d" else row}  # fmt: skip
        changes.append(json.dumps(event).encode())
    changes += rng.sample(changes, 300)
    rng.shuffle(changes)
    lines = history + [b"null"] + bad_lines() + changes
    rows, dead, counters = run_file_replica(tmp_path, lines)
    latest: dict[str, Any] = {}  # each generated key's event of the greatest LSN
    for event in sorted(map(json.loads, changes), key=lambda event: event["source"]["lsn"]):
        latest[json.dumps({"id": (event["after"] or event["before"])["id"]})] = event
    expected = {key: event["after"] for key, event in latest.items() if event["op"] != "d"}
    expected['{"id":1006}'] = EXPECTED_TABLES[CUSTOMERS]['{"id":1006}']
    assert final_tables(rows) == {CUSTOMERS: {k.replace(" ", ""): v for k, v in expected.items()}}
    # The event time is source.ts_ms: the Datastream row and the Debezium message have none.
    assert sorted((d["reason"], d["step"]) for d in dead) == [
        ("bad_timestamp", "parse"), ("bad_timestamp", "parse"), ("cdc_no_key", "normalize"),
        ("cdc_unknown_op", "normalize"), ("invalid_json", "parse"),
    ]  # fmt: skip
    assert counters["dropped.tombstone"] == 2
    assert counters["dropped.cdc_superseded"] > 0 and counters["dropped.cdc_duplicate"] > 0
    assert counters[READ] == len(lines)
