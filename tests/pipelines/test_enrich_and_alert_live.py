"""enrich_and_alert on the real local servers: transactions on Kinesis (moto, 2 shards), profiles
in Redis, alerts on the Pub/Sub emulator, every enriched record in the BigQuery emulator.

Expected records, alerts and counts are computed here in plain Python from the test data.

The pipeline gives its main sink no schema (enriched records are the input plus a profile whose
fields only the reference knows), so a ``bigquery://`` sink cannot create its table
(``create=if_needed`` is refused at configure time): the table is created here from the schema
this test expects, and the sink writes with ``create=never``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from google.cloud import bigquery

from pipelines.catalog import get_pipeline
from pipelines.devtools.services.specs import BIGQUERY_PROJECT, ServiceSpec
from pipelines.framework.run import build_pipeline, run_pipeline
from tests.support import pull_json
from transforms.io.bigquery.client import bounded_retry
from transforms.io.bigquery.client import make_client as bigquery_client
from transforms.io.endpoint import EndpointError
from transforms.io.kinesis.client import StreamTarget, make_client
from transforms.io.redis.text import to_text
from transforms.metrics import DEAD_LETTERED, DROPPED, READ, WRITTEN

REGION = "us-east-1"
START = 1_764_064_800  # 2025-11-25T10:00:00Z, a multiple of 10 minutes
WINDOW = 600  # --burst_window=10m
BURST_COUNT = 4  # more than 4 transactions of a customer in one window: a burst alert
PROFILES = {
    "c1": {"risk_score": 0.2, "typical_amount": 50.0, "tier": "gold"},
    "c2": {"risk_score": 0.9, "typical_amount": 100.0, "tier": "silver"},
    "c3": {"risk_score": 0.1, "typical_amount": 20.0, "tier": "bronze"},
}
# (transaction id, customer, amount, seconds after START)
PLAN = [
    ("t00", "c1", 40.5, 0),
    ("t01", "c1", 45.0, 60),
    ("t02", "c1", 200.25, 120),  # > 3 * 50: high_amount
    ("t03", "c1", 30.0, 180),
    ("t04", "c1", 55.0, 240),  # c1's 5th in [10:00, 10:10): a burst (the duplicate not counted)
    ("t05", "c2", 90.0, 300),  # risk 0.9: high_risk
    ("t06", "c3", 70.0, 360),  # > 3 * 20: high_amount
    ("t07", "c3", 10.0, 420),
    ("t08", "c9", 9000.0, 480),  # no profile: passes with a null profile, raises no alert
    ("t09", "c1", 35.0, 900),  # c1 in the second window: one only
    ("t10", "c3", 15.0, 960),
    ("t11", "c3", 25.0, 1020),
]
DUPLICATE_OF = "t03"  # put twice, the copy under another partition key (the other shard)


def iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def transactions() -> list[dict[str, Any]]:
    return [
        {"transaction_id": tid, "customer_id": customer, "amount": amount,
         "ts": iso(START + offset)}
        for tid, customer, amount, offset in PLAN
    ]  # fmt: skip


def enriched(txn: dict[str, Any]) -> dict[str, Any]:
    return {**txn, "profile": PROFILES.get(txn["customer_id"])}


def rule_alert(txn: dict[str, Any]) -> str | None:
    """The first rule (in order) a transaction matches, as the default --rules say."""
    profile = PROFILES.get(txn["customer_id"])
    if profile is None:
        return None
    if txn["amount"] > 3 * profile["typical_amount"]:
        return "high_amount"
    if profile["risk_score"] > 0.8:
        return "high_risk"
    return None


def expected_alerts(unique: list[dict[str, Any]]) -> list[dict[str, Any]]:
    alerts = [{**enriched(t), "alert": rule_alert(t)} for t in unique if rule_alert(t)]
    counts: Counter[tuple[str, int]] = Counter()
    for txn in unique:
        seconds = int(dt.datetime.fromisoformat(txn["ts"].replace("Z", "+00:00")).timestamp())
        counts[(txn["customer_id"], seconds // WINDOW * WINDOW)] += 1
    for (customer, start), events in counts.items():
        if events > BURST_COUNT:
            alerts.append({"customer_id": customer, "window_start": iso(start),
                           "window_end": iso(start + WINDOW), "events": events,
                           "timing": "ON_TIME", "is_final": True, "pane_index": 0,
                           "alert": "burst"})  # fmt: skip
    return alerts


def canonical(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(row, sort_keys=True) for row in rows)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def kinesis(kinesis_server: ServiceSpec, unique_name: str) -> Iterator[tuple[Any, str]]:
    """A fresh 2-shard stream and a client, the stream deleted afterwards."""
    client = make_client(StreamTarget("x", REGION, kinesis_server.endpoint, "kinesis://x"))
    client.create_stream(StreamName=unique_name, ShardCount=2)
    client.get_waiter("stream_exists").wait(
        StreamName=unique_name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50}
    )
    yield client, unique_name
    client.delete_stream(StreamName=unique_name)


@pytest.fixture
def profiles(redis_server: ServiceSpec, unique_name: str) -> Iterator[str]:
    """The profiles as hashes under this test's own prefix; the --profiles URI."""
    client = redis.Redis.from_url(redis_server.endpoint)
    prefix = f"{unique_name}:customer"
    for customer, row in PROFILES.items():
        client.hset(f"{prefix}:{customer}", mapping={k: to_text(v) for k, v in row.items()})
    yield f"{redis_server.endpoint}?key={prefix}:{{customer_id}}"
    client.delete(*[f"{prefix}:{customer}" for customer in PROFILES])
    client.close()


TABLE_SCHEMA = [
    bigquery.SchemaField("transaction_id", "STRING"),
    bigquery.SchemaField("customer_id", "STRING"),
    bigquery.SchemaField("amount", "FLOAT"),
    bigquery.SchemaField("ts", "TIMESTAMP"),
    bigquery.SchemaField(
        "profile",
        "RECORD",
        fields=[
            bigquery.SchemaField("risk_score", "FLOAT"),
            bigquery.SchemaField("typical_amount", "FLOAT"),
            bigquery.SchemaField("tier", "STRING"),
        ],
    ),
]


@pytest.fixture
def enriched_table(bigquery_emulator: ServiceSpec, unique_name: str) -> Iterator[tuple[Any, str]]:
    """An empty table for the enriched records in a fresh dataset; ``(client, table id)``."""
    client = bigquery_client(BIGQUERY_PROJECT, bigquery_emulator.endpoint)
    dataset = f"{BIGQUERY_PROJECT}.{unique_name}"
    client.create_dataset(dataset, timeout=30)
    table = f"{dataset}.enriched"
    client.create_table(bigquery.Table(table, schema=TABLE_SCHEMA), timeout=30)
    try:
        yield client, table
    finally:
        client.delete_dataset(dataset, delete_contents=True, not_found_ok=True, timeout=30)
        client.close()


# --- helpers ----------------------------------------------------------------------------------


def table_rows(client: Any, table: str) -> list[dict[str, Any]]:
    job = client.query(f"SELECT * FROM `{table}`", timeout=30, retry=bounded_retry(30),
                       job_retry=None)  # fmt: skip
    return [dict(row) for row in job.result(timeout=30, retry=bounded_retry(30))]


def as_expected_row(record: dict[str, Any]) -> dict[str, Any]:
    """An enriched record as BigQuery returns it: ``ts`` a UTC datetime, floats for FLOAT."""
    moment = dt.datetime.fromisoformat(record["ts"].replace("Z", "+00:00"))
    profile = record["profile"]
    return {**record, "amount": float(record["amount"]), "ts": moment,
            "profile": None if profile is None else dict(profile)}  # fmt: skip


def as_landed_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row read back; a NULL RECORD may come back as a dict of nulls: that is a null too."""
    profile = row["profile"]
    if isinstance(profile, dict) and all(v is None for v in profile.values()):
        profile = None
    return {**row, "profile": None if profile is None else dict(profile)}


# --- the test ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_kinesis_transactions_enriched_from_redis_alerts_to_pubsub_records_to_bigquery(
    tmp_path: Path,
    kinesis: tuple[Any, str],
    profiles: str,
    pubsub_topic: tuple[str, str],
    enriched_table: tuple[Any, str],
    kinesis_server: ServiceSpec,
    bigquery_emulator: ServiceSpec,
) -> None:
    client, stream = kinesis
    data = transactions()
    duplicate = next(t for t in data if t["transaction_id"] == DUPLICATE_OF)
    entries = [{"Data": json.dumps(t).encode(), "PartitionKey": t["transaction_id"]}
               for t in data]  # fmt: skip
    entries.append({"Data": json.dumps(duplicate).encode(), "PartitionKey": f"{DUPLICATE_OF}-dup"})
    answer = client.put_records(StreamName=stream, Records=entries)
    assert answer["FailedRecordCount"] == 0
    shards = [r["ShardId"] for r in answer["Records"]]
    assert len(set(shards)) == 2, "the transactions are spread over both shards"
    original = data.index(duplicate)
    assert shards[original] != shards[-1], "the copy comes from the other shard"

    topic, subscription = pubsub_topic
    bq, table = enriched_table
    source = f"kinesis://{stream}?region={REGION}&endpoint={kinesis_server.endpoint}"
    sink = (f"bigquery://{table.replace('.', ':', 1)}?endpoint={bigquery_emulator.endpoint}"
            "&create=never")  # fmt: skip

    report = run_pipeline(
        get_pipeline("enrich_and_alert"),
        [f"--source={source}", f"--profiles={profiles}", f"--alert_sink=pubsub://{topic}",
         f"--burst_count={BURST_COUNT}", "--burst_window=10m", f"--sink={sink}",
         f"--dead_letter=file://{tmp_path}/dlq"],
    )  # fmt: skip

    # Every enriched record, once, in BigQuery; the unknown customer with a null profile.
    landed = [as_landed_row(row) for row in table_rows(bq, table)]
    expected_rows = [as_expected_row(enriched(t)) for t in data]
    assert sorted(landed, key=lambda r: r["transaction_id"]) == expected_rows

    # Exactly the expected alerts: three rule alerts (first matching rule) and one burst.
    alerts = expected_alerts(data)
    assert Counter(a["alert"] for a in alerts) == {"high_amount": 2, "high_risk": 1, "burst": 1}
    received = pull_json(subscription, len(alerts))
    assert canonical(received) == canonical(alerts)

    assert not list(tmp_path.glob("dlq*/*")) and not list(tmp_path.glob("dlq*.*"))
    counters = report.counters
    assert counters[READ] == len(entries)
    assert counters["enriched"] == len(data)
    assert counters[WRITTEN] == len(data)
    assert counters["written_alerts"] == len(alerts)
    assert counters["dropped.duplicate"] == 1
    assert counters[DROPPED] == 1
    assert report.count(DEAD_LETTERED) == 0
    assert counters[READ] == counters["enriched"] + report.count(DEAD_LETTERED) + counters[DROPPED]
    assert report.balanced


@pytest.mark.parametrize("schema", [[], ["--schema=builtin:events"]], ids=["no_schema", "schema"])
def test_a_bigquery_sink_needs_an_existing_table_since_enriched_records_have_no_schema(
    schema: list[str], kinesis: tuple[Any, str], kinesis_server: ServiceSpec
) -> None:
    """The sink is given no schema (even with --schema), so only create=never can work."""
    # An existing stream: on the DirectRunner the source checks that it exists.
    stream = f"kinesis://{kinesis[1]}?region={REGION}&endpoint={kinesis_server.endpoint}"
    base = [f"--source={stream}",
            "--dead_letter=stdout://", "--alert_sink=stdout://",
            "--profiles=redis://127.0.0.1:6390/0?key=p:{customer_id}", *schema]  # fmt: skip
    table = "bigquery://local-project:d.t?endpoint=http://127.0.0.1:9050"
    with pytest.raises(EndpointError, match="create the table first"):
        build_pipeline(get_pipeline("enrich_and_alert"), [*base, f"--sink={table}"])
    _, config = build_pipeline(
        get_pipeline("enrich_and_alert"), [*base, f"--sink={table}&create=never"]
    )
    assert config.sink.table == "local-project.d.t"
