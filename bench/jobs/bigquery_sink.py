"""``bigquery_sink``: three ways to write rows to BigQuery, against the local emulator.

Every variant is a Beam pipeline on the same records (the events of the job's file, decoded
with msgspec inside the pipeline) into its own table of the events schema (day-partitioned on
``ts``), in a dataset made for the run on the emulator (REST 127.0.0.1:9050, gRPC 9060) and
deleted afterwards, outside the timing:

* ``insert_all`` (the baseline): the suite's ``bigquery://`` sink with ``method=insert_all``
  (legacy streaming inserts, JSON, 500 rows a request);
* ``storage_write``: the suite's sink, its default method: the Storage Write API's default
  stream (protocol buffer rows, 500 a request), at least once;
* ``storage_write_exactly_once``: the same with ``mode=exactly_once`` (a committed stream with
  offsets, and a write-log entry and lookup per request);
* ``beam_streaming_inserts``: Beam's ``WriteToBigQuery(method=STREAMING_INSERTS)``, its
  clients pointed at the emulator by `beam_on_emulator` (Beam has googleapis' URL built in).

The emulator's speed, on the same cores, is most of what is measured: the figures compare the
methods' cost on the client and in round trips, not BigQuery's.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import apache_beam as beam
import msgspec
from apache_beam.coders.coders import BytesCoder
from apache_beam.testing.util import assert_that, equal_to

from bench.data import events_file
from bench.jobs.common import ROOT, Job
from transforms.blocks import Batch
from transforms.io.base import SinkContext
from transforms.io.bigquery.client import ensure_table, make_client
from transforms.io.registry import make_sink
from transforms.message import Record
from transforms.metrics import counter_totals
from transforms.schema import Schema

PROJECT = "local-project"
REST = "http://127.0.0.1:9050"
GRPC = "127.0.0.1:9060"
SCHEMA = Schema.load(ROOT / "pipelines" / "schemas" / "events.json")


def _dataset(out: Path) -> str:
    """A dataset unique to the run (its temporary folder)."""
    return "bench_" + "".join(c if c.isalnum() else "_" for c in out.parent.name)


def emulator_unavailable() -> str | None:
    """Returns why the job cannot run, or None when the emulator answers."""
    try:
        client = make_client(PROJECT, REST)
        list(client.list_datasets(timeout=5, retry=None))  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - any failure means skip
        return f"no BigQuery emulator at {REST} ({exc.__class__.__name__})"
    return None


def _records(pipeline: beam.Pipeline, path: Path) -> beam.PCollection:
    return (
        pipeline
        | beam.io.ReadFromText(str(path), coder=BytesCoder())
        | "Decode" >> beam.Map(msgspec.json.decode)
    )


def _suite(path: Path, out: Path, options: str) -> int:
    """File -> decode -> the suite's sink; checks that it dead-lettered nothing."""
    uri = (f"bigquery://{PROJECT}/{_dataset(out)}.events?endpoint={REST}&storage_endpoint="
           f"{GRPC}&batch_size=500{options}")  # fmt: skip
    sink = make_sink(uri, SinkContext(pipeline="bench", schema=SCHEMA, event_time_field="ts"))
    pipeline = beam.Pipeline()
    records = _records(pipeline, path) | "Records" >> beam.Map(Record)
    assert_that(records | Batch() | sink, equal_to([]))
    result = pipeline.run()
    result.wait_until_finish()
    return counter_totals(result.metrics()).get("written", 0)


def _insert_all(path: Path, out: Path) -> int:
    return _suite(path, out, "&method=insert_all")


def _storage_write(path: Path, out: Path) -> int:
    return _suite(path, out, "")


def _storage_write_exactly_once(path: Path, out: Path) -> int:
    return _suite(path, out, "&mode=exactly_once")


def beam_on_emulator() -> None:
    """Points Beam's BigQuery clients (apitools and google-cloud-bigquery) at the emulator.

    For this process only (each variant runs in its own): Beam builds its apitools client
    with googleapis' URL and Application Default Credentials, and its insertAll client
    without an endpoint.
    """
    from apache_beam.internal.http_client import get_new_http
    from apache_beam.io.gcp import bigquery_tools
    from apache_beam.io.gcp.internal.clients import bigquery as bigquery_api

    def apitools_client(_: Any) -> Any:
        return bigquery_api.BigqueryV2(
            url=f"{REST}/bigquery/v2/", get_credentials=False, http=get_new_http(),
            response_encoding="utf8",
        )  # fmt: skip

    bigquery_tools.BigQueryWrapper._bigquery_client = staticmethod(apitools_client)  # type: ignore[method-assign,assignment]
    bigquery_tools.gcp_bigquery = types.SimpleNamespace(  # type: ignore[assignment]
        Client=lambda **_: make_client(PROJECT, REST)
    )


def _beam_streaming_inserts(path: Path, out: Path) -> int:
    """File -> decode -> Beam's WriteToBigQuery with streaming inserts, into a created table."""
    beam_on_emulator()
    table = f"{PROJECT}.{_dataset(out)}.events"
    ensure_table(make_client(PROJECT, REST), table, SCHEMA, "ts")
    with beam.Pipeline() as pipeline:
        _ = _records(pipeline, path) | beam.io.WriteToBigQuery(
            table.replace(".", ":", 1),
            method=beam.io.WriteToBigQuery.Method.STREAMING_INSERTS,
            create_disposition=beam.io.BigQueryDisposition.CREATE_NEVER,
            write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND,
        )
    return -1


def cleanup(out: Path) -> int:
    """Counts the run's rows, then deletes its dataset."""
    client = make_client(PROJECT, REST)
    dataset = f"{PROJECT}.{_dataset(out)}"
    try:
        rows = next(iter(client.query(f"SELECT COUNT(*) AS n FROM `{dataset}.events`").result()))
        count = int(rows["n"])
    except Exception:  # noqa: BLE001 - nothing written
        count = 0
    client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)
    return count


JOB = Job(
    events_file,
    {
        "insert_all": _insert_all,
        "storage_write": _storage_write,
        "storage_write_exactly_once": _storage_write_exactly_once,
        "beam_streaming_inserts": _beam_streaming_inserts,
    },
    unavailable=emulator_unavailable,
    cleanup=cleanup,
)
