"""cdc_replicate and primary keys: key changes leave no ghost row, one row per canonical key.

An update of a row's primary key (``before.id=2``, ``after.id=3``) is applied as a delete of the
old key and an upsert of the new one, into the real Redis state and the real BigQuery emulator
replica, in a bounded run and on a `TestStream`. Key values ``1``, ``"1"`` and ``1.0`` are one
row; ``true`` is its own; a list or object key is dead-lettered ``cdc_bad_key`` and a null or
missing one ``cdc_no_key``, with the original bytes. ``--key_columns=id`` names the key of every
table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from apache_beam.testing import test_stream
from google.cloud import bigquery

from pipelines.catalog import get_pipeline
from pipelines.devtools.services.specs import ServiceSpec
from pipelines.framework.options import OptionError
from pipelines.framework.run import RunReport, build_pipeline, run_pipeline
from transforms.blocks import Batch
from transforms.cdc.normalize import KEY_CHANGES
from transforms.io.bigquery.client import bounded_retry, make_client
from transforms.io.files import FileSource
from transforms.message import Message, Origin
from transforms.metrics import DEAD_LETTERED, READ, counter_totals

pytestmark = pytest.mark.usefixtures("live_direct_runner")

SPEC = get_pipeline("cdc_replicate")
PROJECT = "local-project"
CUSTOMERS = "inventory.customers"
ORDERS = "inventory.orders"
TIMEOUT = 30.0


def event(
    op: str, lsn: int, table: str = "customers", before: Any = None, after: Any = None
) -> bytes:
    """A Debezium Postgres event value (schemas off) at LSN ``lsn``, as a JSON line."""
    source = {"connector": "postgresql", "db": "shop", "schema": "inventory", "table": table,
              "lsn": lsn, "sequence": json.dumps([str(lsn - 1), str(lsn)]),
              "ts_ms": 1732528800000 + lsn}  # fmt: skip
    return json.dumps({"before": before, "after": after, "source": source, "op": op}).encode()


# Customer 2 is created, then its id is changed to 3 (REPLICA IDENTITY FULL: the update carries
# the old row); customer 5 stays as it is.
GHOST = [
    event("c", 100, after={"id": 2, "email": "two@x"}),
    event("c", 105, after={"id": 5, "email": "five@x"}),
    event("u", 110, before={"id": 2, "email": "two@x"}, after={"id": 3, "email": "two@x"}),
]

# 1, "1" and 1.0 are one key (the last change wins); true is another; two tables, one option.
FOUR_ROWS = [
    event("c", 200, after={"id": 1, "v": "int"}),
    event("u", 210, after={"id": "1", "v": "text"}),
    event("u", 220, after={"id": 1.0, "v": "float"}),
    event("c", 230, after={"id": True, "v": "bool"}),
    event("c", 240, table="orders", after={"id": "7", "total": 3}),
    event("u", 250, table="orders", before={"id": 7, "total": 3}, after={"id": 8, "total": 3}),
]
BAD_KEYS = {
    event("c", 300, after={"id": [1], "v": "list"}): "cdc_bad_key",
    event("c", 310, after={"id": {"n": 1}, "v": "object"}): "cdc_bad_key",
    event("c", 320, after={"id": None, "v": "null"}): "cdc_no_key",
    event("c", 330, table="orders", after={"total": 9}): "cdc_no_key",
    event("u", 340, before={"id": [2]}, after={"id": 2, "v": "bad old key"}): "cdc_bad_key",
}


def read_jsonl(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.open()]


def check_balance(report: RunReport, read: int, key_changes: int, dead: int) -> None:
    assert report.balanced, report.render()
    assert report.count(READ) == read, report.render()
    assert report.count(KEY_CHANGES) == key_changes, report.render()
    assert report.count(DEAD_LETTERED) == dead, report.render()
    if key_changes:
        assert f"read {read} + {KEY_CHANGES} {key_changes} = applied" in report.render()


# --- file replica: the four rows, bad keys ---------------------------------------------------


def test_one_row_per_canonical_key_and_bad_keys_dead_lettered_with_their_bytes(
    tmp_path: Path,
) -> None:
    source = tmp_path / "changes.jsonl"
    source.write_bytes(b"\n".join([*FOUR_ROWS, *BAD_KEYS, *GHOST]) + b"\n")
    out, dlq = tmp_path / "out", tmp_path / "dlq"

    report = run_pipeline(
        SPEC,
        [f"--source=file://{source}", f"--sink=file://{out}", f"--dead_letter=file://{dlq}",
         "--key_columns=id"],
    )  # fmt: skip

    check_balance(report, len(FOUR_ROWS) + len(BAD_KEYS) + len(GHOST), 2, len(BAD_KEYS))
    rows = {(row["table"], json.dumps(row["key"])): row["row"] for row in read_jsonl(out)}
    assert rows == {
        (CUSTOMERS, '{"id": 1}'): {"id": 1.0, "v": "float"},
        (CUSTOMERS, '{"id": true}'): {"id": True, "v": "bool"},
        (ORDERS, '{"id": 8}'): {"id": 8, "total": 3},
        (CUSTOMERS, '{"id": 5}'): {"id": 5, "email": "five@x"},
        (CUSTOMERS, '{"id": 3}'): {"id": 3, "email": "two@x"},
    }
    dead = read_jsonl(dlq)
    assert sorted((d["step"], d["reason"], d["payload_string"]) for d in dead) == sorted(
        ("normalize", reason, line.decode()) for line, reason in BAD_KEYS.items()
    )


# --- the ghost row, bounded ------------------------------------------------------------------


def redis_state(client: redis.Redis, prefix: str) -> dict[str, dict[str, str]]:
    """Every hash under the prefix, without its ``_sequence``."""
    return {
        name.removeprefix(f"{prefix}:"): {
            field: value for field, value in client.hgetall(name).items() if field != "_sequence"
        }
        for name in client.scan_iter(f"{prefix}:*")
    }


EXPECTED_REDIS = {
    f'{CUSTOMERS}:{{"id":2}}': {"_deleted": "1"},
    f'{CUSTOMERS}:{{"id":3}}': {"id": "3", "email": "two@x"},
    f'{CUSTOMERS}:{{"id":5}}': {"id": "5", "email": "five@x"},
}


def test_a_key_change_leaves_no_ghost_row_in_redis_state(
    redis_server: ServiceSpec, redis_db: redis.Redis, unique_name: str, tmp_path: Path
) -> None:
    source = tmp_path / "changes.jsonl"
    source.write_bytes(b"\n".join(GHOST) + b"\n")
    report = run_pipeline(
        SPEC,
        [f"--source=file://{source}",
         f"--sink={redis_server.endpoint}?mode=state&key={unique_name}:{{table}}:{{key}}",
         f"--dead_letter=file://{tmp_path}/dlq", "--key_columns=id"],
    )  # fmt: skip

    check_balance(report, len(GHOST), 1, 0)
    assert redis_state(redis_db, unique_name) == EXPECTED_REDIS


@pytest.fixture
def bq(bigquery_emulator: ServiceSpec, unique_name: str) -> Iterator[tuple[bigquery.Client, str]]:
    """A client and a dataset name, the dataset deleted afterwards."""
    client = make_client(PROJECT, bigquery_emulator.endpoint)
    dataset = f"{unique_name}_keys"
    yield client, dataset
    client.delete_dataset(f"{PROJECT}.{dataset}", delete_contents=True, not_found_ok=True,
                          timeout=TIMEOUT, retry=bounded_retry(TIMEOUT))  # fmt: skip
    client.close()


def replica(client: bigquery.Client, dataset: str) -> dict[str, Any]:
    """The replica of the customers table: key -> row (None for a tombstone)."""
    job = client.query(
        f"SELECT key, row, _deleted FROM `{PROJECT}.{dataset}.inventory_customers`",
        timeout=TIMEOUT, retry=bounded_retry(TIMEOUT), job_retry=None,
    )  # fmt: skip
    rows = job.result(timeout=TIMEOUT, retry=bounded_retry(TIMEOUT))
    return {row["key"]: None if row["_deleted"] else row["row"] for row in rows}


EXPECTED_REPLICA = {
    '{"id":2}': None,
    '{"id":3}': {"id": 3, "email": "two@x"},
    '{"id":5}': {"id": 5, "email": "five@x"},
}


def replica_sink(endpoint: str, dataset: str) -> str:
    return f"--sink=bigquery-replica://{PROJECT}:{dataset}?tables={CUSTOMERS}&endpoint={endpoint}"


def test_a_key_change_leaves_no_ghost_row_in_the_bigquery_replica(
    bigquery_emulator: ServiceSpec, bq: tuple[bigquery.Client, str], tmp_path: Path
) -> None:
    client, dataset = bq
    source = tmp_path / "changes.jsonl"
    source.write_bytes(b"\n".join(GHOST) + b"\n")
    report = run_pipeline(
        SPEC,
        [f"--source=file://{source}", replica_sink(bigquery_emulator.endpoint, dataset),
         f"--dead_letter=file://{tmp_path}/dlq", "--key_columns=id"],
    )  # fmt: skip

    check_balance(report, len(GHOST), 1, 0)
    assert replica(client, dataset) == EXPECTED_REPLICA


# --- the ghost row, on a TestStream ----------------------------------------------------------


def run_on_test_stream(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sink: str
) -> dict[str, int]:
    """Runs cdc_replicate's own graph in streaming mode, its source a `TestStream` of GHOST.

    The file source of the options is replaced by a TestStream that delivers the changes one
    at a time, with the watermark advancing between them, then the processing time.
    """
    stream = test_stream.TestStream()
    for line, payload in enumerate(GHOST, 1):
        message = Message(payload, {}, Origin("file", path="stream", line=line))
        stream = stream.add_elements([message]).advance_watermark_to(line * 10)
    # Past the replica's merge_every (60 s), as a stream's clock would be, before the end.
    stream = stream.advance_processing_time(120).advance_watermark_to_infinity()
    monkeypatch.setattr(FileSource, "expand", lambda self, pbegin: pbegin | stream | Batch())
    placeholder = tmp_path / "unused.jsonl"
    placeholder.write_bytes(b"")
    pipeline, _ = build_pipeline(
        SPEC,
        [f"--source=file://{placeholder}", sink, f"--dead_letter=file://{tmp_path}/dlq",
         "--key_columns=id", "--streaming"],
    )  # fmt: skip
    result = pipeline.run()
    result.wait_until_finish()
    counters = counter_totals(result.metrics())
    report = RunReport(SPEC.name, str(result.state), counters, delivered=SPEC.delivered,
                       splits=SPEC.splits)  # fmt: skip
    check_balance(report, len(GHOST), 1, 0)
    return counters


def test_a_key_change_on_a_test_stream_leaves_no_ghost_row_in_redis_state(
    redis_server: ServiceSpec,
    redis_db: redis.Redis,
    unique_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = f"--sink={redis_server.endpoint}?mode=state&key={unique_name}:{{table}}:{{key}}"
    run_on_test_stream(monkeypatch, tmp_path, sink)
    assert redis_state(redis_db, unique_name) == EXPECTED_REDIS


def test_a_key_change_on_a_test_stream_leaves_no_ghost_row_in_the_bigquery_replica(
    bigquery_emulator: ServiceSpec,
    bq: tuple[bigquery.Client, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, dataset = bq
    run_on_test_stream(monkeypatch, tmp_path, replica_sink(bigquery_emulator.endpoint, dataset))
    assert replica(client, dataset) == EXPECTED_REPLICA


# --- options ---------------------------------------------------------------------------------


def test_a_bare_key_column_is_the_key_of_every_table_and_a_qualified_entry_wins(
    tmp_path: Path,
) -> None:
    source = tmp_path / "changes.jsonl"
    source.write_bytes(
        b"\n".join([
            event("c", 100, after={"id": 1, "sku": "a"}),
            event("c", 110, table="orders", after={"order_id": 9, "id": 1, "line": 2}),
            event("c", 120, table="products", after={"id": "p-1"}),
        ]) + b"\n"
    )  # fmt: skip
    out = tmp_path / "out"
    report = run_pipeline(
        SPEC,
        [f"--source=file://{source}", f"--sink=file://{out}",
         f"--dead_letter=file://{tmp_path}/dlq", f"--key_columns=id;{ORDERS}=order_id,line"],
    )  # fmt: skip
    check_balance(report, 3, 0, 0)
    assert sorted((row["table"], json.dumps(row["key"])) for row in read_jsonl(out)) == [
        (CUSTOMERS, '{"id": 1}'),
        (ORDERS, '{"order_id": 9, "line": 2}'),
        ("inventory.products", '{"id": "p-1"}'),
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [("inventory.customers", "for one table write inventory.customers=COLUMN"),
     ("id;uid", "the key columns of every table are declared twice"),
     ("=id", "use table=column"),
     ("id,", "use table=column"),
     ("t=a=b", "use table=column"),
     (f"{CUSTOMERS}=id;{CUSTOMERS}=uid", "are declared twice")],
)  # fmt: skip
def test_bad_key_column_forms_are_refused_before_the_run(
    tmp_path: Path, value: str, message: str
) -> None:
    source = tmp_path / "changes.jsonl"
    source.write_bytes(b"\n".join(GHOST) + b"\n")
    argv = [f"--source=file://{source}", f"--sink=file://{tmp_path}/o",
            f"--dead_letter=file://{tmp_path}/d", f"--key_columns={value}"]  # fmt: skip
    with pytest.raises(OptionError) as raised:
        build_pipeline(SPEC, argv)
    assert str(raised.value).startswith("--key_columns: ")
    assert message in str(raised.value)
    assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()


def test_the_option_help_says_what_a_bare_column_means() -> None:
    (option,) = [option for option in SPEC.options if option.name == "key_columns"]
    assert "'id' for every table" in option.help
