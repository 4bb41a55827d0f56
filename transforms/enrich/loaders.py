"""Loaders of whole reference tables for `transforms.enrich.side_input.SideInputEnrich`.

One per scheme of a reference URI (registered in `transforms.io.registry` ``REFERENCES``): JSON
Lines files, a BigQuery table, the Redis hashes a key template matches. Each loads the whole
table, keyed by the URI's ``key`` template; rows lacking a field of the key are skipped
(counter ``enrich_rows_skipped``). When rows share a key the last one read wins; the rows it
replaced are counted (``enrich_rows_replaced``) and logged as a warning with one such key.
"""

from __future__ import annotations

import glob
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any, Protocol

from apache_beam.io.filesystems import FileSystems

from transforms import metrics
from transforms.enrich.base import BadReference, key_function
from transforms.enrich.redis_lookup import hash_row, lookup_connection
from transforms.errors import RecordError
from transforms.io.bigquery.sink import TABLE_PATTERN, table_location
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.redis.connection import RedisConnection
from transforms.io.redis.text import KeyTemplate
from transforms.message import Message, Origin
from transforms.parse import parse_message

__all__ = ["BigQueryLoader", "JsonLinesLoader", "Loader", "RedisHashLoader", "Table"]

Table = dict[str, dict[str, Any]]
"""A loaded reference table: join key -> row, e.g. ``{"c1": {"customer_id": "c1", ...}}``."""
SKIPPED = metrics.ENRICH_ROWS_SKIPPED
_SCAN_BATCH = 500
# A reference row has no size limit (a record's is --max_payload_bytes).
_NO_SIZE_LIMIT = sys.maxsize

log = logging.getLogger(__name__)


class Loader(Protocol):
    """Loads the whole reference table; called on a worker, once per refresh."""

    def __call__(self, at: float) -> Table:
        """Returns the table.

        Args:
            at: when the refresh fired, in epoch seconds (a loader of versioned snapshots may
                pick the one of that time; a loader of a live store ignores it).
        """
        ...


def _keyed(rows: Iterator[dict[str, Any]], key: KeyTemplate, where: str) -> Table:
    """Keys ``rows`` by ``key``: rows without a field of it are skipped and counted.

    Rows with the same key: the last one wins; the rows it replaced are counted and logged
    (``where`` names the table) with their number and the first such key.
    """
    key_of = key_function(key)  # as the records' keys are rendered
    table: Table = {}
    skipped = replaced = 0
    repeated: str | None = None
    for row in rows:
        join_key = key_of(row)
        if join_key is None:
            skipped += 1
            continue
        if join_key in table:
            replaced += 1
            repeated = repeated if repeated is not None else join_key
        table[join_key] = row
    if skipped:
        metrics.counter(SKIPPED).inc(skipped)
    if replaced:
        metrics.counter(metrics.ENRICH_ROWS_REPLACED).inc(replaced)
        log.warning(
            "enrich: %s: %d reference rows repeat the key of an earlier row (first: %r); "
            "the last row of each key is kept",
            where,
            replaced,
            repeated,
        )
    return table


class JsonLinesLoader:
    """Loads JSON Lines files (a path or glob, local or any Beam file system).

    Each line is decoded as Parse decodes a record's payload (`transforms.parse.parse_message`,
    without a size limit): a line it would dead-letter (not UTF-8, not JSON, NaN or a number
    out of range, a lone surrogate, nested too deeply, not an object) is skipped and counted
    in ``enrich_rows_skipped``, and the rest of the file loads. Blank lines are ignored.
    """

    def __init__(self, pattern: str, key: KeyTemplate) -> None:
        self.pattern = pattern
        self.key = key

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint, key: KeyTemplate) -> JsonLinesLoader:
        """Reads ``file:///PATH-OR-GLOB?key=...``; raises `EndpointError` when nothing matches."""
        endpoint.check_params(frozenset({"key", "refresh"}))
        if endpoint.host not in ("", "localhost") or not glob.glob(endpoint.path):
            raise EndpointError(f"{endpoint}: no file matches (use file:///absolute/path)")
        return cls(endpoint.path, key)

    def _rows(self) -> Iterator[dict[str, Any]]:
        for match in FileSystems.match([self.pattern])[0].metadata_list:
            origin = Origin("file", path=match.path)
            with FileSystems.open(match.path) as handle:
                for line in handle:
                    if not line.strip():
                        continue
                    try:
                        record = parse_message(Message(line, {}, origin), max_bytes=_NO_SIZE_LIMIT)
                    except RecordError:
                        metrics.counter(SKIPPED).inc()
                        continue
                    yield record.data

    def __call__(self, at: float) -> Table:
        return _keyed(self._rows(), self.key, self.pattern)


class BigQueryLoader:
    """Loads every row of a BigQuery table (``project.dataset.table``).

    ``endpoint`` is the REST URL of a local emulator, as for the BigQuery sink.
    """

    def __init__(self, table: str, key: KeyTemplate, endpoint: str | None = None) -> None:
        self.table = table
        self.key = key
        self.endpoint = endpoint

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint, key: KeyTemplate) -> BigQueryLoader:
        """Reads ``bigquery://PROJECT:DATASET.TABLE?key=...[&endpoint=URL]``."""
        endpoint.check_params(frozenset({"key", "refresh", "endpoint"}))
        match = TABLE_PATTERN.fullmatch(table_location(endpoint))
        if match is None:
            raise EndpointError(f"{endpoint}: name the table as bigquery://PROJECT:DATASET.T")
        table = f"{match['project']}.{match['dataset']}.{match['table']}"
        return cls(table, key, endpoint.params.get("endpoint"))

    def __call__(self, at: float) -> Table:
        from transforms.io.bigquery.client import make_client

        client = make_client(self.table.split(".")[0], self.endpoint)
        try:
            rows = (dict(row.items()) for row in client.list_rows(self.table))
            return _keyed(rows, self.key, self.table)
        finally:
            client.close()


def _match_pattern(key: KeyTemplate) -> str:
    """``customer:{id}`` gives the ``SCAN MATCH`` pattern ``customer:*``."""
    escaped = (re.sub(r"([*?\[\]\\])", r"\\\1", literal) for literal, _ in key.parts)
    return "".join(
        literal + ("*" if name is not None else "")
        for literal, (_, name) in zip(escaped, key.parts, strict=True)
    )


class RedisHashLoader:
    """Loads every Redis hash whose key the template matches; keys the table by Redis key.

    A hash whose key or text is not UTF-8 is left out: its records have no reference row.
    """

    def __init__(self, connection: RedisConnection, key: KeyTemplate) -> None:
        self.connection = connection
        self.key = key

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint, key: KeyTemplate) -> RedisHashLoader:
        """Reads ``redis://HOST:PORT/DB?key=...&mode=snapshot`` (and its connection options)."""
        endpoint.check_params(
            frozenset({"key", "mode", "refresh", "timeout", "attempts", "password_env",
                       "password_secret"})
        )  # fmt: skip
        return cls(lookup_connection(endpoint, 10.0), key)

    def _load(self) -> Table:
        client = self.connection.connect(decode=True)
        try:
            table: Table = {}
            keys = list(client.scan_iter(match=_match_pattern(self.key), count=_SCAN_BATCH))
            for start in range(0, len(keys), _SCAN_BATCH):
                chunk = keys[start : start + _SCAN_BATCH]
                pipe = client.pipeline(transaction=False)
                for name in chunk:
                    pipe.hgetall(name)
                for name, reply in zip(chunk, pipe.execute(raise_on_error=False), strict=True):
                    if isinstance(reply, dict) and reply:  # not a hash, or gone: not a row
                        row = hash_row(name, reply)
                        if not isinstance(row, BadReference):  # text that is not UTF-8: not a row
                            table[name] = row
            return table
        finally:
            client.connection_pool.disconnect()

    def __call__(self, at: float) -> Table:
        return self.connection.call(self._load)
