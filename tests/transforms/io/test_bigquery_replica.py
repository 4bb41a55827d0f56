"""The bigquery-replica:// sink against the real BigQuery emulator, through Beam pipelines."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.pvalue import TaggedOutput
from apache_beam.testing import test_stream
from apache_beam.testing.util import assert_that, equal_to
from google.cloud import bigquery

from pipelines.devtools.services.specs import ServiceSpec
from tests.support import no_dead_letters, run_sink
from transforms.blocks import Batch
from transforms.cdc.change import Change
from transforms.dead_letter_writer import dead_letter_sink
from transforms.io.base import SinkContext
from transforms.io.bigquery.client import bounded_retry, make_client
from transforms.io.bigquery.replica import BigQueryReplicaSink
from transforms.io.endpoint import EndpointError
from transforms.io.registry import make_sink
from transforms.message import Message, Origin, Record
from transforms.metrics import counter_totals

pytestmark = pytest.mark.usefixtures("live_direct_runner")

PROJECT = "local-project"
TIMEOUT = 30.0
CUSTOMERS = "inventory.customers"
ORDERS = "inventory.orders"
TABLE = "inventory_customers"  # the replica table of CUSTOMERS


def _seq(*parts: int) -> str:
    """The replica's ``_sequence`` of a sequence, written out independently of the sink."""
    return ".".join(f"{part:020d}" for part in parts)


def _change(
    table: str,
    key: dict[str, Any],
    op: str,
    sequence: tuple[int, ...],
    row: dict[str, Any] | None = None,
    source_ts: str | None = None,
    line: int = 0,
) -> Record:
    """A change record, as if parsed from line ``line`` of a file."""
    data = Change(table, key, op, row, sequence, source_ts).to_dict()
    origin = Message(json.dumps(data).encode(), {}, Origin("file", path="/cdc.jsonl", line=line))
    return Record(data, origin)


def _upsert(key: int, sequence: tuple[int, ...], table: str = CUSTOMERS, **row: Any) -> Record:
    return _change(table, {"id": key}, "upsert", sequence, {"id": key, **row})


def _delete(key: int, sequence: tuple[int, ...], table: str = CUSTOMERS) -> Record:
    return _change(table, {"id": key}, "delete", sequence)


@pytest.fixture
def client(bigquery_emulator: ServiceSpec) -> Iterator[bigquery.Client]:
    bq = make_client(PROJECT, bigquery_emulator.endpoint)
    yield bq
    bq.close()


@pytest.fixture
def dataset(client: bigquery.Client, unique_name: str) -> Iterator[str]:
    """A dataset name unique to the test, deleted (with its tables) afterwards."""
    yield unique_name
    client.delete_dataset(
        f"{PROJECT}.{unique_name}",
        delete_contents=True,
        not_found_ok=True,
        timeout=TIMEOUT,
        retry=bounded_retry(TIMEOUT),
    )


def _sink(spec: ServiceSpec, dataset: str, query: str = "") -> BigQueryReplicaSink:
    uri = (
        f"bigquery-replica://{PROJECT}:{dataset}?endpoint={spec.endpoint}"
        f"&tables={CUSTOMERS},{ORDERS}{query}"
    )
    sink = make_sink(uri, SinkContext(pipeline="test_pipeline"))
    assert isinstance(sink, BigQueryReplicaSink)
    return sink


def _replica(client: bigquery.Client, dataset: str, table: str) -> dict[str, dict[str, Any]]:
    """The replica table as ``{key text: {"row", "_sequence", "_deleted"}}``."""
    job = client.query(
        f"SELECT key, row, _sequence, _deleted FROM `{PROJECT}.{dataset}.{table}`",
        timeout=TIMEOUT,
        retry=bounded_retry(TIMEOUT),
        job_retry=None,
    )
    rows = job.result(timeout=TIMEOUT, retry=bounded_retry(TIMEOUT))
    return {
        row["key"]: {"row": row["row"], "_sequence": row["_sequence"], "_deleted": row["_deleted"]}
        for row in rows
    }


def _live(row: dict[str, Any], *sequence: int) -> dict[str, Any]:
    return {"row": row, "_sequence": _seq(*sequence), "_deleted": False}


def _tombstone(*sequence: int) -> dict[str, Any]:
    return {"row": None, "_sequence": _seq(*sequence), "_deleted": True}


# --------------------------------------------------------------------------------------------
# Convergence


def _history(seed: int) -> list[Record]:
    """Upserts and deletes of 12 keys in two tables, sequences increasing per key."""
    rng = random.Random(seed)
    changes = []
    position = 0
    for step in range(60):
        table = (CUSTOMERS, ORDERS)[step % 2]
        key = rng.randrange(6)
        position += rng.randrange(1, 5)
        sequence = (position // 7, position)
        if rng.random() < 0.25:
            changes.append(_delete(key, sequence, table))
        else:
            changes.append(_upsert(key, sequence, table, step=step, tags=["x", step]))
    return changes


def _expected(changes: list[Record]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per replica table, per key: the change with the greatest sequence (plain Python)."""
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for record in changes:
        data = record.data
        where = (data["table"], data["key"]["id"])
        if where not in latest or data["sequence"] > latest[where]["sequence"]:
            latest[where] = data
    tables: dict[str, dict[str, dict[str, Any]]] = {TABLE: {}, "inventory_orders": {}}
    for (table, key), data in latest.items():
        state = (
            _tombstone(*data["sequence"])
            if data["op"] == "delete"
            else _live(data["row"], *data["sequence"])
        )
        tables[table.replace(".", "_")][f'{{"id":{key}}}'] = state
    return tables


@pytest.mark.integration
def test_in_order_shuffled_duplicated_and_replayed_changes_give_the_same_replica(
    bigquery_emulator: ServiceSpec, client: bigquery.Client, dataset: str
) -> None:
    history = _history(seed=7)
    expected = _expected(history)
    assert any(state["_deleted"] for state in expected[TABLE].values())
    shuffled = history + history[10:30]  # duplicates
    random.Random(3).shuffle(shuffled)
    first, second = shuffled[:40], shuffled[40:] + shuffled[5:25]  # the second run replays

    in_order = _sink(bigquery_emulator, dataset, "&batch_size=7")
    counters = run_sink(history, in_order)
    assert counters["written"] == len(history)
    assert counters["replica_merges"] == 2  # one per table, at the end of the bounded run
    # Replica tables are named after the source tables: the second order uses a second dataset.
    replayed = _sink(bigquery_emulator, f"{dataset}_b", "&batch_size=5")
    try:
        run_sink(first, replayed)
        run_sink(second, replayed)
        for table, rows in expected.items():
            assert _replica(client, dataset, table) == rows
            assert _replica(client, f"{dataset}_b", table) == rows
    finally:
        client.delete_dataset(
            f"{PROJECT}.{dataset}_b", delete_contents=True, not_found_ok=True, timeout=TIMEOUT
        )


# --------------------------------------------------------------------------------------------
# Deletes, key changes, truncates


@pytest.mark.integration
def test_a_delete_stays_a_tombstone_that_only_a_newer_upsert_revives(
    bigquery_emulator: ServiceSpec, client: bigquery.Client, dataset: str
) -> None:
    sink = _sink(bigquery_emulator, dataset)
    run_sink(
        [
            _upsert(1, (1,), email="a@x"),
            _upsert(2, (2,), email="b@x"),
            _delete(1, (3,)),
            # The primary key of 2 changes to 20: a delete of the old key, then the new key.
            _delete(2, (4, 0)),
            _upsert(20, (4, 1), email="b@x"),
        ],
        sink,
    )
    after_delete = {
        '{"id":1}': _tombstone(3),
        '{"id":2}': _tombstone(4, 0),
        '{"id":20}': _live({"id": 20, "email": "b@x"}, 4, 1),
    }
    assert _replica(client, dataset, TABLE) == after_delete

    # A late, older upsert (a retried bundle, a replayed log) does not bring 1 back.
    run_sink([_upsert(1, (2,), email="late@x")], sink)
    assert _replica(client, dataset, TABLE) == after_delete

    run_sink([_upsert(1, (5,), email="again@x")], sink)
    assert _replica(client, dataset, TABLE) == {
        **after_delete,
        '{"id":1}': _live({"id": 1, "email": "again@x"}, 5),
    }


@pytest.mark.integration
def test_a_truncate_tombstones_older_rows_and_ignores_older_changes(
    bigquery_emulator: ServiceSpec, client: bigquery.Client, dataset: str
) -> None:
    sink = _sink(bigquery_emulator, dataset)
    run_sink([_upsert(1, (1,), v=1), _upsert(2, (2,), v=2), _upsert(7, (9,), table=ORDERS)], sink)
    truncate = _change(CUSTOMERS, {}, "truncate", (5,), source_ts="2026-11-25T10:00:05Z")
    run_sink(
        [
            truncate,
            _upsert(3, (6,), v=3),  # after the truncate
            _upsert(4, (4,), v=4),  # a new key, but from before the truncate
            _upsert(1, (3,), v=11),  # an older change of a truncated row
        ],
        sink,
    )

    assert _replica(client, dataset, TABLE) == {
        '{"id":1}': _tombstone(5),
        '{"id":2}': _tombstone(5),
        '{"id":3}': _live({"id": 3, "v": 3}, 6),
    }
    job = client.query(
        f"SELECT DISTINCT _source_ts FROM `{PROJECT}.{dataset}.{TABLE}` WHERE _deleted",
        timeout=TIMEOUT,
        job_retry=None,
    )
    assert [row[0] for row in job.result(timeout=TIMEOUT)] == [
        dt.datetime(2026, 11, 25, 10, 0, 5, tzinfo=dt.timezone.utc)
    ]
    # A truncate of one table leaves the others alone.
    assert _replica(client, dataset, "inventory_orders") == {'{"id":7}': _live({"id": 7}, 9)}


# --------------------------------------------------------------------------------------------
# Failures


@pytest.mark.integration
def test_changes_that_cannot_be_staged_are_dead_lettered_and_the_others_replicated(
    bigquery_emulator: ServiceSpec, client: bigquery.Client, dataset: str
) -> None:
    good = _upsert(1, (1,), name="ok")
    not_a_change = Record({"table": CUSTOMERS, "key": {"id": 2}, "op": "merge", "sequence": [2]})
    other_table = _change("inventory.secrets", {"id": 3}, "upsert", (3,), {"id": 3}, line=3)
    bad_time = _change(CUSTOMERS, {"id": 4}, "upsert", (4,), {"id": 4}, "yesterday", line=4)

    def check(dead_letters: list[dict[str, Any]]) -> None:
        by_line = {(letter["source"] or {}).get("line"): letter for letter in dead_letters}
        assert sorted(by_line, key=str) == [3, 4, None], dead_letters
        assert {letter["reason"] for letter in dead_letters} == {"sink_rejected"}
        assert "not a CDC change" in by_line[None]["error_message"]
        assert "op must be one of" in by_line[None]["error_message"]
        assert json.loads(by_line[None]["payload_bytes"]) == not_a_change.data
        message = by_line[3]["error_message"]
        assert "'inventory.secrets' is not replicated; add it to tables=" in message
        # Rejected by BigQuery itself (TIMESTAMP column), with the change's original bytes.
        assert by_line[4]["payload_bytes"] == bad_time.origin.payload  # type: ignore[union-attr]

    sink = _sink(bigquery_emulator, dataset)
    counters = run_sink([good, not_a_change, other_table, bad_time], sink, check)

    assert counters["written"] == 1
    assert _replica(client, dataset, TABLE) == {'{"id":1}': _live({"id": 1, "name": "ok"}, 1)}


# --------------------------------------------------------------------------------------------
# Streaming: periodic merges


@pytest.mark.integration
def test_streaming_merges_each_table_every_merge_every_while_changes_arrive(
    bigquery_emulator: ServiceSpec, client: bigquery.Client, dataset: str
) -> None:
    class Snapshot(beam.DoFn):
        """Reads the replica when the second batch arrives.

        The DirectRunner reads the next TestStream event only once the pipeline is idle, with
        fired timers run: the first batch has been staged and, after the processing-time
        advance, merged.
        """

        def setup(self) -> None:
            self._client = make_client(PROJECT, bigquery_emulator.endpoint)

        def teardown(self) -> None:
            self._client.close()

        def process(self, record: Record) -> Iterator[Any]:
            if record.data["sequence"] == [10]:
                yield TaggedOutput("snapshot", _replica(self._client, dataset, TABLE))
            yield record

    stream = (
        test_stream.TestStream()
        .add_elements([_upsert(1, (1,), v=1), _upsert(2, (2,), v=2)])
        .advance_processing_time(90)
        .add_elements([_upsert(1, (10,), v=10), _delete(2, (11,))])
        .advance_processing_time(90)
        .advance_watermark_to_infinity()
    )
    sink = _sink(bigquery_emulator, dataset, "&merge_every=60s")
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    read = pipeline | stream | beam.ParDo(Snapshot()).with_outputs("snapshot", main="records")
    assert_that(read.records | Batch() | sink, no_dead_letters)
    first_merge = {'{"id":1}': _live({"id": 1, "v": 1}, 1), '{"id":2}': _live({"id": 2, "v": 2}, 2)}
    assert_that(read.snapshot, equal_to([first_merge]), label="snapshot")
    result = pipeline.run()
    result.wait_until_finish()

    assert _replica(client, dataset, TABLE) == {
        '{"id":1}': _live({"id": 1, "v": 10}, 10),
        '{"id":2}': _tombstone(11),
    }
    assert counter_totals(result.metrics())["replica_merges"] == 2


# --------------------------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "tables=<source tables> is required"),
        ("tables=a,,b", "tables=<source tables> is required"),
        ("tables=a.b,a_b", "share a replica table name"),
        ("tables=a,a", "listed twice"),
        ("tables=a&colour=red", "unknown parameters ['colour']"),
        ("tables=a&merge_every=soon", "merge_every: expected a duration"),
        ("tables=a&merge_every=500ms", "merge_every must be at least 1s"),
        ("tables=a&staging_suffix=-log", "staging_suffix must be letters"),
        ("tables=a&batch_size=50001", "at most 50000"),
        ("tables=a&attempts=0", "attempts must be forever"),
        ("tables=a&endpoint=127.0.0.1:9050", "http:// or https://"),
    ],
)
def test_bad_uris_are_refused_before_any_pipeline_runs(query: str, message: str) -> None:
    with pytest.raises(EndpointError) as refused:
        make_sink(f"bigquery-replica://local-project:ds?{query}", SinkContext(pipeline="p"))
    assert message in str(refused.value)


@pytest.mark.parametrize(
    "uri",
    ["bigquery-replica://local-project/ds.t?tables=a", "bigquery-replica://Local/ds?tables=a"],
)
def test_the_dataset_must_be_named_project_colon_dataset(uri: str) -> None:
    with pytest.raises(EndpointError, match="name the dataset as"):
        make_sink(uri, SinkContext(pipeline="p"))


def test_it_takes_change_records_only_so_it_cannot_be_a_dead_letter_sink() -> None:
    with pytest.raises(EndpointError, match="'error_timestamp'.*write those to a bigquery://"):
        dead_letter_sink("bigquery-replica://p1:ds?tables=a", "p")


def test_source_tables_name_the_replica_and_staging_tables() -> None:
    sink = make_sink(
        "bigquery-replica://local-project/cdc?tables=inventory.customers, public.Order-Items"
        "&staging_suffix=_log&merge_every=2m",
        SinkContext(pipeline="p"),
    )
    assert isinstance(sink, BigQueryReplicaSink)
    assert sink.tables == {
        "inventory.customers": "local-project.cdc.inventory_customers",
        "public.Order-Items": "local-project.cdc.public_Order_Items",
    }
    assert sink.replica.staging("inventory_customers") == (
        "local-project.cdc.inventory_customers_log"
    )
    assert sink.merge_seconds == 120
