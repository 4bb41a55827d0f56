"""The one place that wires google-cloud-bigquery to real BigQuery or to a local emulator.

A client for the emulator (``bqemulator``, see ``pipelines.devtools.services``) needs anonymous
credentials and the emulator's REST URL as the API endpoint; everything else of the suite gets
its clients from `make_client` and so never has to know the difference.

One emulator gap is worked around here: bqemulator 1.4.0 answers HTTP 500 to ``tables.insert``
when a nested field is named like an SQL keyword (``source.offset`` of the dead-letter schema),
so on the emulator such a table is created with DDL instead (which the emulator accepts, but
for which it records no TIMESTAMP partitioning nor clustering).
"""

from __future__ import annotations

import os

import requests
from google.api_core import exceptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from transforms.schema import Field, Schema

__all__ = [
    "EMULATOR_ENV",
    "INGESTION_TIME",
    "STORAGE_EMULATOR_ENV",
    "EmulatorClient",
    "bounded_retry",
    "ensure_table",
    "is_transient",
    "make_client",
    "table_schema",
]

EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"
STORAGE_EMULATOR_ENV = "BIGQUERY_STORAGE_EMULATOR_HOST"
"""``HOST:PORT`` of an emulator's Storage Write API (gRPC), beside `EMULATOR_ENV`."""
INGESTION_TIME = "_PARTITIONTIME"
"""The ``partition_field`` of ingestion-time partitioning (by when rows arrive)."""

# Reasons BigQuery gives for errors that go away when the same request is sent again later.
_TRANSIENT_REASONS = frozenset(
    {"backendError", "internalError", "badGateway", "rateLimitExceeded", "quotaExceeded"}
)
_PARTITION_TYPES = frozenset({"TIMESTAMP", "DATE"})
_DDL_TYPES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}


class EmulatorClient(bigquery.Client):
    """A client of a local BigQuery emulator, from `make_client`; `ensure_table` knows it."""


def make_client(project: str, endpoint: str | None = None) -> bigquery.Client:
    """Returns a BigQuery client for ``project``.

    Args:
        project: the project that runs the requests (and owns tables named without a project).
        endpoint: the REST URL of an emulator, e.g. ``http://127.0.0.1:9050``. When it is
            ``None`` the environment variable ``BIGQUERY_EMULATOR_HOST`` is used if set
            (``http://`` is assumed when it has no scheme). With an endpoint the client uses
            anonymous credentials; without one, Application Default Credentials and the real
            BigQuery API.
    """
    endpoint = endpoint or os.environ.get(EMULATOR_ENV) or None
    if endpoint is None:
        return bigquery.Client(project=project)
    if "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    return EmulatorClient(
        project=project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": endpoint},
    )


def bounded_retry(deadline: float) -> Retry:
    """Returns the client library's retry policy, giving up after ``deadline`` seconds."""
    return bigquery.DEFAULT_RETRY.with_deadline(deadline)


def is_transient(error: BaseException) -> bool:
    """Tells whether a failed request may succeed when sent again.

    Server errors (5xx), HTTP 429, rate and quota limits, connection failures and timeouts are
    transient; other client errors (a missing table, a bad request, no permission) are not.
    """
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return True
    if isinstance(error, (exceptions.ServerError, exceptions.TooManyRequests)):
        return True
    if isinstance(error, exceptions.GoogleAPICallError):
        return any(item.get("reason") in _TRANSIENT_REASONS for item in error.errors or ())
    return False


def table_schema(client: bigquery.Client, table_ref: str, timeout: float = 30.0) -> Schema | None:
    """Returns the schema of an existing table, or ``None`` when the table does not exist.

    Args:
        client: the client, from `make_client`.
        table_ref: ``project.dataset.table``.
        timeout: the most seconds the request, retries included, may take.
    """
    try:
        table = client.get_table(table_ref, retry=bounded_retry(timeout), timeout=timeout)
    except exceptions.NotFound:
        return None
    return Schema.from_bigquery([field.to_api_repr() for field in table.schema])


def ensure_table(
    client: bigquery.Client,
    table_ref: str,
    schema: Schema,
    partition_field: str | None = None,
    clustering: list[str] | None = None,
    timeout: float = 30.0,
    partition_type: str = "DAY",
) -> None:
    """Creates the table, and its dataset, unless they exist; safe to call from many workers.

    An existing table is left as it is (its schema is not compared or updated). On the emulator
    (an `EmulatorClient`), a table the emulator refuses to create over REST is created with DDL.

    Args:
        client: the client, from `make_client`.
        table_ref: ``project.dataset.table``.
        schema: the table's schema.
        partition_field: a ``TIMESTAMP`` or ``DATE`` field of ``schema`` to partition the table
            by, `INGESTION_TIME` (``_PARTITIONTIME``) to partition it by the time rows arrive,
            or ``None`` for no partitioning.
        clustering: up to four fields of ``schema`` to cluster the table by.
        timeout: the most seconds each request, retries included, may take.
        partition_type: the partitions' granularity: ``DAY``, ``HOUR``, ``MONTH`` or ``YEAR``.

    Raises:
        ValueError: ``partition_field`` is not a ``TIMESTAMP`` or ``DATE`` field of ``schema``.
    """
    table = bigquery.Table(
        table_ref, schema=[bigquery.SchemaField.from_api_repr(f) for f in schema.to_bigquery()]
    )
    if partition_field == INGESTION_TIME:
        table.time_partitioning = bigquery.TimePartitioning(type_=partition_type)
    elif partition_field is not None:
        spec = schema.get(partition_field)
        if spec is None or spec.type not in _PARTITION_TYPES or spec.mode == "REPEATED":
            raise ValueError(
                f"{table_ref}: partition field {partition_field!r} must be a TIMESTAMP or DATE "
                "field of the schema"
            )
        table.time_partitioning = bigquery.TimePartitioning(
            type_=partition_type, field=partition_field
        )
    if clustering:
        table.clustering_fields = clustering
    retry = bounded_retry(timeout)
    client.create_dataset(
        bigquery.Dataset(f"{table.project}.{table.dataset_id}"),
        exists_ok=True,
        retry=retry,
        timeout=timeout,
    )
    if not isinstance(client, EmulatorClient):
        client.create_table(table, exists_ok=True, retry=retry, timeout=timeout)
        return
    try:
        client.create_table(table, exists_ok=True, retry=None, timeout=timeout)  # type: ignore[arg-type]
    except exceptions.InternalServerError:
        ddl = _create_table_ddl(
            table_ref, schema, partition_field, clustering or [], partition_type
        )
        client.query(ddl, timeout=timeout, job_retry=None).result(timeout=timeout)


def _ddl_type(field: Field) -> str:
    """Returns the GoogleSQL type of a field: ``INT64``, ``ARRAY<STRUCT<`k` STRING>>``..."""
    if field.type == "RECORD":
        inner = ", ".join(f"`{child.name}` {_ddl_type(child)}" for child in field.fields)
        kind = f"STRUCT<{inner}>"
    else:
        kind = _DDL_TYPES.get(field.type, field.type)
    if field.mode == "REPEATED":
        return f"ARRAY<{kind}>"
    return kind


def _create_table_ddl(
    table_ref: str,
    schema: Schema,
    partition_field: str | None,
    clustering: list[str],
    partition_type: str = "DAY",
) -> str:
    """Returns ``CREATE TABLE IF NOT EXISTS`` for the schema, every name quoted."""
    columns = ", ".join(
        f"`{f.name}` {_ddl_type(f)}{' NOT NULL' if f.mode == 'REQUIRED' else ''}"
        for f in schema.fields
    )
    ddl = f"CREATE TABLE IF NOT EXISTS `{table_ref}` ({columns})"
    if partition_field == INGESTION_TIME:
        ddl += f" PARTITION BY TIMESTAMP_TRUNC(_PARTITIONTIME, {partition_type})"
    elif partition_field is not None:
        spec = schema.get(partition_field)
        by_time = f"`{partition_field}`"
        if spec is not None and spec.type == "TIMESTAMP":
            by_time = f"TIMESTAMP_TRUNC({by_time}, {partition_type})"
        elif partition_type != "DAY":
            by_time = f"DATE_TRUNC({by_time}, {partition_type})"
        ddl += f" PARTITION BY {by_time}"
    if clustering:
        ddl += " CLUSTER BY " + ", ".join(f"`{name}`" for name in clustering)
    return ddl
