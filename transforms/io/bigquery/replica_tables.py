"""The tables of a CDC replica: their schemas and names, the staging rows, and the MERGE.

See `transforms.io.bigquery.replica` for how the sink uses them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from transforms.cdc.change import Change, key_text, sequence_key
from transforms.event_time import format_timestamp
from transforms.io.bigquery.sink import to_json_row
from transforms.schema import Field, Schema

__all__ = ["REPLICA_SCHEMA", "STAGING_SCHEMA", "merge_sql", "replica_name", "staging_row"]

STAGING_SCHEMA = Schema(
    (
        Field("key", "STRING", "REQUIRED"),
        Field("op", "STRING", "REQUIRED"),
        Field("sequence_key", "STRING", "REQUIRED"),
        Field("row", "JSON"),
        Field("source_ts", "TIMESTAMP"),
        Field("ingest_time", "TIMESTAMP", "REQUIRED"),
    )
)
REPLICA_SCHEMA = Schema(
    (
        Field("key", "STRING", "REQUIRED"),
        Field("row", "JSON"),
        Field("_sequence", "STRING", "REQUIRED"),
        Field("_deleted", "BOOLEAN", "REQUIRED"),
        Field("_source_ts", "TIMESTAMP"),
        Field("_merged_at", "TIMESTAMP", "REQUIRED"),
    )
)
NOT_NAME = re.compile(r"\W", re.ASCII)


def replica_name(table: str) -> str:
    """Returns the replica table's name of a source table.

    ``inventory.customers`` gives ``inventory_customers``: every character but ASCII letters,
    digits and ``_`` becomes ``_``.
    """
    return NOT_NAME.sub("_", table)


def _json_text(value: Any) -> str:
    """Returns ``value`` as compact JSON with sorted keys, bytes as base64."""
    return json.dumps(to_json_row(value), sort_keys=True, separators=(",", ":"), default=str)


def staging_row(change: Change, ingest_time: float) -> dict[str, Any]:
    """Returns the staging-table row of a change (columns: see `transforms.io.bigquery.replica`).

    Args:
        change: the change.
        ingest_time: when it was staged, in epoch seconds.

    Returns:
        E.g. ``{"key": '{"id":1}', "op": "upsert", "sequence_key": "0000...0005", "row":
        '{"email":"a@b.c","id":1}', "source_ts": "2026-11-25T10:00:00Z", "ingest_time":
        "2026-11-25T10:00:02Z"}``; ``row`` is JSON text, as BigQuery's insert API wants it.
    """
    return {
        "key": key_text(change.key),
        "op": change.op,
        "sequence_key": sequence_key(change.sequence),
        "row": None if change.row is None else _json_text(change.row),
        "source_ts": change.source_ts,
        "ingest_time": format_timestamp(ingest_time),
    }


def merge_sql(replica: str, staging: str) -> str:
    """Returns the MERGE of a staging table into its replica table.

    Args:
        replica: the replica table, ``project.dataset.table``.
        staging: its staging table, ``project.dataset.table``.

    Returns:
        GoogleSQL with two parameters: ``@truncated``, the ``sequence_key`` of the latest
        staged truncate (``""`` when there is none), and ``@truncated_ts``, its ``source_ts``.
    """
    return f"""
MERGE `{replica}` AS t
USING (
  SELECT `key`, `op`, `sequence_key`, `row`, `source_ts` FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY `key` ORDER BY `sequence_key` DESC) AS _rank
    FROM `{staging}`
    WHERE `op` != 'truncate' AND `sequence_key` > @truncated
  ) WHERE _rank = 1
) AS s
ON t.`key` = s.`key`
WHEN MATCHED AND s.`sequence_key` > t.`_sequence` THEN UPDATE SET
  `row` = s.`row`, `_sequence` = s.`sequence_key`, `_deleted` = s.`op` = 'delete',
  `_source_ts` = s.`source_ts`, `_merged_at` = CURRENT_TIMESTAMP()
WHEN NOT MATCHED THEN
  INSERT (`key`, `row`, `_sequence`, `_deleted`, `_source_ts`, `_merged_at`)
  VALUES (s.`key`, s.`row`, s.`sequence_key`, s.`op` = 'delete', s.`source_ts`,
          CURRENT_TIMESTAMP())
WHEN NOT MATCHED BY SOURCE AND t.`_sequence` < @truncated THEN UPDATE SET
  `row` = NULL, `_sequence` = @truncated, `_deleted` = TRUE, `_source_ts` = @truncated_ts,
  `_merged_at` = CURRENT_TIMESTAMP()
"""


def latest_truncate_sql(staging: str) -> str:
    return (
        f"SELECT `sequence_key`, `source_ts` FROM `{staging}` WHERE `op` = 'truncate' "
        "ORDER BY `sequence_key` DESC LIMIT 1"
    )
