"""Where exactly-once writes remember which row went to which committed-stream offset.

A committed stream refuses a second append at an offset already written, so a retried append is
a no-op; but a worker that dies loses its stream and offsets, and its unacknowledged messages
come back to a new worker. The ledger is a table beside the target, ``TABLE_write_log``, with
one row per written row: its insert id (from its source message, the same on every delivery),
stream and offset, recorded *before* the append. A record whose id is in the ledger is settled
by appending it alone at its recorded stream and offset (`resolve`):

* ``ALREADY_EXISTS``: its row landed before (appends are atomic per request): nothing to write;
* appended: its batch never landed and the offset was the stream's end: written now, once;
* past the stream's end, or the stream is gone: it never landed there; written as new.

A record may have several entries (its request was refused in part and sent again without
the refused rows): the newest is probed first, and the first that finds the row settles it.

Ledger rows are written through the default stream (a duplicate entry is harmless) and looked
up with one query per batch of the sink (the cost of exactly-once on a real project: a small
query per batch; the ledger is partitioned by day on ``written_at``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from google.cloud import bigquery

from transforms.io.bigquery.client import bounded_retry, ensure_table
from transforms.io.bigquery.rows import RowEncoder
from transforms.io.bigquery.write_api import DEFAULT_STREAM, append, stream_parent
from transforms.schema import Field, Schema

__all__ = ["LEDGER_SCHEMA", "LEDGER_SUFFIX", "Ledger"]

LEDGER_SUFFIX = "_write_log"
LEDGER_SCHEMA = Schema(
    (
        Field("insert_id", "STRING", "REQUIRED"),
        Field("stream", "STRING", "REQUIRED"),
        Field("row_offset", "INTEGER", "REQUIRED"),
        Field("written_at", "TIMESTAMP", "REQUIRED"),
    )
)
TIMEOUT = 60.0


class Ledger:
    """The write log of one target table.

    Args:
        client: a BigQuery client (REST), for creating and querying the ledger.
        write_client: the Storage Write client, for recording.
        table: the target table, ``project.dataset.table``.
    """

    def __init__(self, client: bigquery.Client, write_client: object, table: str) -> None:
        self.table = table + LEDGER_SUFFIX
        self._client = client
        self._write = write_client
        self._encoder = RowEncoder(LEDGER_SCHEMA)
        ensure_table(client, self.table, LEDGER_SCHEMA, "written_at", timeout=TIMEOUT)

    def lookup(self, ids: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
        """Returns ``{insert id: [(stream, offset), ...]}`` of the ids it holds, newest first."""
        job = self._client.query(
            f"SELECT insert_id, stream, row_offset FROM `{self.table}` "
            "WHERE insert_id IN UNNEST(@ids) ORDER BY written_at DESC",
            job_config=bigquery.QueryJobConfig(
                query_parameters=[bigquery.ArrayQueryParameter("ids", "STRING", list(ids))]
            ),
            timeout=TIMEOUT,
            job_retry=None,
        )
        found: dict[str, list[tuple[str, int]]] = {}
        for row in job.result(timeout=TIMEOUT, retry=bounded_retry(TIMEOUT)):
            found.setdefault(row["insert_id"], []).append((row["stream"], row["row_offset"]))
        return found

    def record(self, entries: Iterable[tuple[str, str, int]]) -> None:
        """Records ``(insert id, stream, offset)`` entries before their rows are appended."""
        now = time.time()
        rows = [
            self._encoder.encode(
                {"insert_id": row_id, "stream": stream, "row_offset": offset, "written_at": now}
            )
            for row_id, stream, offset in entries
        ]
        if rows:
            stream = f"{stream_parent(self.table)}/streams/{DEFAULT_STREAM}"
            refused = append(self._write, stream, self._encoder.descriptor, rows)  # type: ignore[arg-type]
            if refused:
                raise RuntimeError(f"{self.table}: the write log refused entries: {refused[:3]}")
