"""Enrich from a whole reference table held in a side input, reloaded on a schedule.

URIs (see `transforms.enrich.base` for the family's contract)::

    file:///data/customers.jsonl?key={customer_id}&refresh=5m     JSON Lines (a glob is fine)
    bigquery://PROJECT:DATASET.TABLE?key={customer_id}&refresh=1h  every row of a table
        (&endpoint=http://127.0.0.1:9050 for a local emulator)
    redis://HOST:PORT/DB?key=customer:{customer_id}&mode=snapshot&refresh=5m
                                                                   every hash the key matches

``key`` keys the table: it is rendered on each reference row (file, BigQuery) or is the Redis
key itself (the template's fields become ``*`` in a ``SCAN MATCH``), and rendered on each
record to find its row. Rows lacking a field of the key are skipped (counter
``enrich_rows_skipped``). A table that fails to load is logged and counted
(``enrich_load_failures``); the records that needed it follow the ``unavailable`` policy.

Refresh is Beam's slowly-updating side input pattern: ``PeriodicImpulse`` fires every
``refresh`` seconds from the start of the run, each firing loads the table into its own fixed
window of that length, and each block is split by the windows its records' event times fall in
(a record without one goes by its block's timestamp), so a record sees the table loaded at the
start of the window its event time falls in; blocks come out in the global window again. A
record whose window has no load (its event time is before the run started) finds no table.
With no ``refresh``, or when the records are bounded (a batch run, which has no time to refresh
in), the table is loaded once. On the local DirectRunner a refresh runs only with a stop time
(`SideInputEnrich` ``stop``); endless refresh is for Dataflow and Flink.

A block (the records of a bundle, or a chunk of a file) is joined with the table as one Beam
element: Beam's per-element cost is paid once per block, whether it comes from a stream or a
file.
"""

from __future__ import annotations

import glob
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any, Protocol

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.periodicsequence import PeriodicImpulse, RebaseMode
from apache_beam.transforms.window import FixedWindows, GlobalWindows, TimestampedValue
from apache_beam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP

from transforms import metrics
from transforms.blocks import Block
from transforms.enrich.base import (
    ERRORS,
    BadReference,
    EnrichSettings,
    Settler,
    key_function,
    parse_key,
)
from transforms.enrich.redis_lookup import RedisConnection, endpoint_duration, hash_row
from transforms.io.bigquery.sink import TABLE_PATTERN, table_location
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.redis.text import KeyTemplate
from transforms.io.registry import make_loader
from transforms.message import Record

__all__ = [
    "BigQueryLoader",
    "JsonLinesLoader",
    "Loader",
    "RedisHashLoader",
    "SideInputEnrich",
    "Table",
]

log = logging.getLogger(__name__)

Table = dict[str, dict[str, Any]]
"""A loaded reference table: join key -> row, e.g. ``{"c1": {"customer_id": "c1", ...}}``."""

SKIPPED = metrics.ENRICH_ROWS_SKIPPED
LOAD_FAILURES = metrics.ENRICH_LOAD_FAILURES
_SCAN_BATCH = 500


class Loader(Protocol):
    """Loads the whole reference table; called on a worker, once per refresh."""

    def __call__(self, at: float) -> Table:
        """Returns the table.

        Args:
            at: when the refresh fired, in epoch seconds (a loader of versioned snapshots may
                pick the one of that time; a loader of a live store ignores it).
        """
        ...


def _keyed(rows: Iterator[dict[str, Any]], key: KeyTemplate) -> Table:
    key_of = key_function(key)  # as the records' keys are rendered
    table: Table = {}
    skipped = 0
    for row in rows:
        join_key = key_of(row)
        if join_key is None:
            skipped += 1
        else:
            table[join_key] = row
    if skipped:
        metrics.counter(SKIPPED).inc(skipped)
    return table


class JsonLinesLoader:
    """Loads JSON Lines files (a path or glob, local or any Beam file system).

    Lines that are not JSON objects are skipped (counted in ``enrich_rows_skipped``).
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
            with FileSystems.open(match.path) as handle:
                for line in handle:
                    try:
                        row = json.loads(line)
                    except ValueError:
                        row = None
                    if isinstance(row, dict):
                        yield row
                    elif line.strip():
                        metrics.counter(SKIPPED).inc()

    def __call__(self, at: float) -> Table:
        return _keyed(self._rows(), self.key)


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
            return _keyed(rows, self.key)
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
        return cls(RedisConnection.from_endpoint(endpoint, 10.0), key)

    def _load(self) -> Table:
        client = self.connection.connect()
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


class _LoadFn(beam.DoFn):
    """An impulse -> the loaded table (nothing when the load fails)."""

    def __init__(self, loader: Loader, where: str) -> None:
        self._loader = loader
        self._where = where

    def process(self, impulse: Any, timestamp=beam.DoFn.TimestampParam) -> Iterator[Table]:
        at = float(timestamp) if timestamp > MIN_TIMESTAMP else time.time()  # Impulse: now
        try:
            table = self._loader(at)
        except Exception:
            log.exception("enrich: loading %s failed", self._where)
            metrics.counter(LOAD_FAILURES).inc()
            return
        yield table


@beam.typehints.with_output_types(Block)
class _JoinFn(beam.DoFn):
    """A `Block` of `Record`s + the side input table -> a `Block` of the enriched records.

    A record whose row is found is merged at once (most records); the others are settled by
    `Settler.settle` and its policies, their dead letters going to `ERRORS` one by one. A block
    whose records were all settled otherwise gives no block.
    """

    def __init__(self, key: KeyTemplate, settings: EnrichSettings) -> None:
        self._key = key
        self._settings = settings

    def setup(self) -> None:
        self._settler = Settler(self._settings)
        self._key_of = key_function(self._key)

    def process(
        self, block: list[Record], table: Table | None, timestamp=beam.DoFn.TimestampParam
    ) -> Iterator[Any]:
        settle = self._settler.settle
        enriched = Block()
        if table is None:
            why = "no reference table loaded for this time"
            for record in block:
                dead = settle(record, None, timestamp, enriched, unavailable=why)
                if dead is not None:
                    yield dead
        else:
            key_of, merge, append = self._key_of, self._settler.enriched, enriched.append
            for record in block:
                join_key = key_of(record.data)
                row = None if join_key is None else table.get(join_key)
                if row is not None:
                    append(merge(record, row))
                    continue
                if join_key is None:
                    missing = f"the record lacks a field of key {self._key.text!r}"
                else:
                    missing = f"no reference row with key {join_key!r}"
                dead = settle(record, None, timestamp, enriched, missing=missing)
                if dead is not None:
                    yield dead
        if enriched:
            yield enriched


@beam.typehints.with_output_types(Block)
class _SplitByRefresh(beam.DoFn):
    """A `Block` -> its records in blocks per refresh window, each at the time of its first.

    A record's time is its event time, or its block's timestamp when it has none; the blocks
    are then windowed by `FixedWindows` of the refresh, as the loads are.
    """

    def __init__(self, refresh: float) -> None:
        self._refresh = refresh

    def process(self, block: list[Record], timestamp=beam.DoFn.TimestampParam) -> Iterator[Any]:
        refresh = self._refresh
        parts: dict[float | None, tuple[Block, Any]] = {}
        for record in block:
            at = record.event_time
            window = None if at is None else at - at % refresh
            part = parts.get(window)
            if part is None:
                parts[window] = part = (Block(), timestamp if at is None else at)
            part[0].append(record)
        for records, first in parts.values():
            yield TimestampedValue(records, first)


class SideInputEnrich(beam.PTransform):
    """Enriches `Block`s of `Record`s from a table loaded into a side input (see this module).

    Returns ``(blocks, errors)`` as every enrich transform does (`transforms.enrich.base`).

    Args:
        loader: loads the table.
        key: the join key, a template rendered on records (and on rows, by the loader).
        settings: the merge and the policies.
        refresh: seconds between loads (0: load once).
        start: when the first refresh fires, epoch seconds (default: when the run starts).
        stop: when refreshing stops, epoch seconds (default: never); with a stop, bounded
            records are refreshed too (this is how refresh is tested locally).
        where: the reference, for logs (credentials redacted).
    """

    def __init__(
        self,
        loader: Loader,
        key: KeyTemplate,
        settings: EnrichSettings,
        refresh: float = 0.0,
        start: float | None = None,
        stop: float | None = None,
        where: str = "the reference table",
    ) -> None:
        super().__init__()
        if refresh < 0:
            raise ValueError(f"refresh must not be negative, got {refresh}")
        if start is not None and stop is not None and stop <= start:
            raise ValueError("refresh stop must come after its start")
        self.loader = loader
        self.key = key
        self.settings = settings
        self.refresh = refresh
        self.start = start
        self.stop = stop
        self.where = where

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint, settings: EnrichSettings) -> SideInputEnrich:
        """Builds the enrich step from a file://, bigquery:// or redis://...mode=snapshot URI.

        The registry (`transforms.io.registry.REFERENCES`) names the loader of each scheme.
        """
        key = parse_key(endpoint.params.get("key", ""), endpoint)
        loader = make_loader(endpoint, key)
        refresh = endpoint_duration(endpoint, "refresh", 0.0)
        return cls(loader, key, settings, refresh=refresh, where=str(endpoint))

    def default_label(self) -> str:
        return "Enrich from side input"

    def expand(self, blocks: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        pipeline = blocks.pipeline
        periodic = self.refresh > 0 and (not blocks.is_bounded or self.stop is not None)
        load = _LoadFn(self.loader, self.where)
        if periodic:
            impulse = PeriodicImpulse(
                start_timestamp=time.time() if self.start is None else self.start,
                stop_timestamp=MAX_TIMESTAMP if self.stop is None else self.stop,
                fire_interval=self.refresh,
                apply_windowing=True,
                rebase=RebaseMode.REBASE_START if self.start is None else RebaseMode.REBASE_NONE,
            )
            tables = pipeline | "Refresh" >> impulse | "Load" >> beam.ParDo(load)
            blocks = (
                blocks
                | "Split by refresh" >> beam.ParDo(_SplitByRefresh(self.refresh))
                | "Window as refreshes" >> beam.WindowInto(FixedWindows(self.refresh))
            )
        else:
            tables = pipeline | "Once" >> beam.Impulse() | "Load" >> beam.ParDo(load)
        joined = blocks | "Join" >> beam.ParDo(
            _JoinFn(self.key, self.settings), beam.pvalue.AsSingleton(tables, default_value=None)
        ).with_outputs(ERRORS, main="blocks")
        enriched, errors = joined.blocks, joined[ERRORS]
        if periodic:
            enriched = enriched | "Global window" >> beam.WindowInto(GlobalWindows())
            errors = errors | "Errors in the global window" >> beam.WindowInto(GlobalWindows())
        return enriched, errors
