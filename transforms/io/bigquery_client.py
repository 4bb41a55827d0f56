"""The one place that wires google-cloud-bigquery to real BigQuery or to a local emulator.

A client for the emulator (``bqemulator``, see ``pipelines.services``) needs anonymous
credentials and the emulator's REST URL as the API endpoint; everything else of the suite gets
its clients from `make_client` and so never has to know the difference.
"""

from __future__ import annotations

import os

import requests
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from transforms.schema import Schema

__all__ = ["EMULATOR_ENV", "ensure_table", "is_transient", "make_client"]

EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"

# Reasons BigQuery gives for errors that go away when the same request is sent again later.
_TRANSIENT_REASONS = frozenset(
    {"backendError", "internalError", "badGateway", "rateLimitExceeded", "quotaExceeded"}
)
_PARTITION_TYPES = frozenset({"TIMESTAMP", "DATE"})


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
    return bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )


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


def ensure_table(
    client: bigquery.Client,
    table_ref: str,
    schema: Schema,
    partition_field: str | None = None,
    clustering: list[str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Creates the table, and its dataset, unless they exist; safe to call from many workers.

    An existing table is left as it is (its schema is not compared or updated).

    Args:
        client: the client, from `make_client`.
        table_ref: ``project.dataset.table``.
        schema: the table's schema.
        partition_field: a ``TIMESTAMP`` or ``DATE`` field of ``schema`` to partition the table
            by day, or ``None`` for no partitioning.
        clustering: up to four fields of ``schema`` to cluster the table by.
        timeout: the most seconds each request, retries included, may take.

    Raises:
        ValueError: ``partition_field`` is not a ``TIMESTAMP`` or ``DATE`` field of ``schema``.
    """
    table = bigquery.Table(
        table_ref, schema=[bigquery.SchemaField.from_api_repr(f) for f in schema.to_bigquery()]
    )
    if partition_field is not None:
        spec = schema.get(partition_field)
        if spec is None or spec.type not in _PARTITION_TYPES or spec.mode == "REPEATED":
            raise ValueError(
                f"{table_ref}: partition field {partition_field!r} must be a TIMESTAMP or DATE "
                "field of the schema"
            )
        table.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field=partition_field
        )
    if clustering:
        table.clustering_fields = clustering
    retry = bigquery.DEFAULT_RETRY.with_deadline(timeout)
    client.create_dataset(
        bigquery.Dataset(table.dataset_id and f"{table.project}.{table.dataset_id}"),
        exists_ok=True,
        retry=retry,
        timeout=timeout,
    )
    client.create_table(table, exists_ok=True, retry=retry, timeout=timeout)
