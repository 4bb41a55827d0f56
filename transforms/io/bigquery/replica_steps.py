"""The steps of the replica sink: staging changes in changelog tables, and merging them.

See `transforms.io.bigquery.replica`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.windowed_value import WindowedValue
from google.cloud import bigquery

from transforms import metrics
from transforms.blocks import Block
from transforms.cdc.change import Change
from transforms.errors import SinkRejected
from transforms.io.batching import Pending, dead_letter
from transforms.io.bigquery.client import ensure_table, is_transient, make_client
from transforms.io.bigquery.replica_tables import (
    REPLICA_SCHEMA,
    latest_truncate_sql,
    merge_sql,
    staging_row,
)
from transforms.io.bigquery.sink import REQUEST_TIMEOUT
from transforms.io.retry import RetryPolicy
from transforms.message import Record

__all__ = ["MERGES"]

MERGES = metrics.REPLICA_MERGES
"""The counter of MERGE statements run."""
MERGE_TIMEOUT = 600.0  # seconds a MERGE may run


def stage_tag(name: str) -> str:
    """Returns the output tag of the staging rows of replica table ``name``."""
    return f"stage:{name}"


@dataclass(frozen=True)
class ReplicaTarget:
    """What the staging and merge DoFns need, picklable.

    Attributes:
        project: the project of the dataset (and of the requests).
        dataset: the dataset of the replica and staging tables.
        endpoint: the emulator's REST URL, or ``None``.
        tables: ``(source table, replica table name)`` pairs.
        staging_suffix: appended to a replica table's name to name its staging table.
        retry: how a request that failed transiently is sent again.
        pipeline: the pipeline's name, for dead-letter records.
    """

    project: str
    dataset: str
    endpoint: str | None
    tables: tuple[tuple[str, str], ...]
    staging_suffix: str
    retry: RetryPolicy
    pipeline: str

    def table(self, name: str) -> str:
        """Returns ``project.dataset.name``."""
        return f"{self.project}.{self.dataset}.{name}"

    def staging(self, name: str) -> str:
        """Returns the staging table of replica table ``name``, ``project.dataset.table``."""
        return self.table(name + self.staging_suffix)


class StageFn(beam.DoFn):
    """Turns blocks of change `Record`s into blocks of staging rows, tagged by replica table.

    The main output is the dead-letter dicts of records that are not changes of a replicated
    table.
    """

    def __init__(self, replica: ReplicaTarget) -> None:
        self._replica = replica
        self._names = dict(replica.tables)

    def process(
        self,
        block: list[Record],
        timestamp=beam.DoFn.TimestampParam,
        window=beam.DoFn.WindowParam,
    ) -> Iterator[WindowedValue | TaggedOutput]:
        staged: dict[str, Block] = {}
        for record in block:
            try:
                change = Change.from_dict(record.data)
            except (KeyError, TypeError, ValueError) as error:
                yield self._rejected(record, timestamp, window, f"not a CDC change: {error!r}")
                continue
            name = self._names.get(change.table)
            if name is None:
                yield self._rejected(
                    record,
                    timestamp,
                    window,
                    f"table {change.table!r} is not replicated; add it to tables= (replicated: "
                    f"{sorted(self._names)})",
                )
                continue
            row = Record(staging_row(change, time.time()), record.origin, record.event_time)
            staged.setdefault(name, Block()).append(row)
        for name, rows in staged.items():
            yield TaggedOutput(stage_tag(name), rows)

    def _rejected(self, record: Record, timestamp: Any, window: Any, message: str) -> WindowedValue:
        return dead_letter(
            Pending(record, None, timestamp, window),
            pipeline=self._replica.pipeline,
            reason=SinkRejected.reason,
            error_type=SinkRejected.__name__,
            message=f"bigquery-replica {self._replica.project}:{self._replica.dataset}: {message}",
        )


class MergeFn(beam.DoFn):
    """Merges a staging table into its replica table.

    Input: ``(staging table, changes staged since the last merge)``, after those changes were
    inserted. Output: nothing.
    """

    def __init__(self, replica: ReplicaTarget) -> None:
        self._replica = replica
        self._replicas = {replica.staging(name): replica.table(name) for _, name in replica.tables}

    def setup(self) -> None:
        self._client = make_client(self._replica.project, self._replica.endpoint)
        self._created: set[str] = set()
        self._merges = metrics.counter(MERGES)

    def teardown(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()

    def process(self, element: tuple[str, int]) -> None:
        staging = element[0]
        replica = self._replicas[staging]
        if replica not in self._created:
            ensure_table(self._client, replica, REPLICA_SCHEMA, timeout=REQUEST_TIMEOUT)
            self._created.add(replica)
        latest = self._query(latest_truncate_sql(staging), [])
        truncated, truncated_ts = (latest[0][0], latest[0][1]) if latest else ("", None)
        self._query(
            merge_sql(replica, staging),
            [
                bigquery.ScalarQueryParameter("truncated", "STRING", truncated),
                bigquery.ScalarQueryParameter("truncated_ts", "TIMESTAMP", truncated_ts),
            ],
        )
        self._merges.inc()

    def _query(self, sql: str, parameters: list[Any]) -> list[Any]:
        """Runs one query, again after transient failures; returns its rows."""
        config = bigquery.QueryJobConfig(query_parameters=parameters)

        def run() -> list[Any]:
            job = self._client.query(
                sql,
                job_config=config,
                timeout=REQUEST_TIMEOUT,
                # The retries are the RetryPolicy's.
                retry=None,  # type: ignore[arg-type]
                job_retry=None,
            )
            return list(job.result(timeout=MERGE_TIMEOUT))

        replica = self._replica
        return replica.retry.call(run, is_transient, f"{replica.project}:{replica.dataset}")
