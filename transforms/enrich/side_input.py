"""Enrich from a whole reference table held in a side input, reloaded on a schedule.

URIs (see `transforms.enrich.base` for the family's contract)::

    file:///data/customers.jsonl?key={customer_id}&refresh=5m     JSON Lines (a glob is fine)
    bigquery://PROJECT:DATASET.TABLE?key={customer_id}&refresh=1h  every row of a table
        (&endpoint=http://127.0.0.1:9050 for a local emulator)
    redis://HOST:PORT/DB?key=customer:{customer_id}&mode=snapshot&refresh=5m
                                                                   every hash the key matches

``key`` keys the table: it is rendered on each reference row (file, BigQuery) or is the Redis
key itself (the template's fields become ``*`` in a ``SCAN MATCH``), and rendered on each
record to find its row. Rows lacking a field of the key, and JSON lines that Parse would reject
as records, are skipped (counter ``enrich_rows_skipped``); of rows sharing a key the last one
wins (logged, see `transforms.enrich.loaders`). A table that fails to load is logged and counted
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

import logging
import time
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.transforms.periodicsequence import PeriodicImpulse, RebaseMode
from apache_beam.transforms.window import FixedWindows, GlobalWindows, TimestampedValue
from apache_beam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP

from transforms import metrics
from transforms.blocks import Block
from transforms.enrich.base import ERRORS, EnrichSettings, SettlingFn, parse_key
from transforms.enrich.loaders import Loader, Table
from transforms.enrich.redis_lookup import endpoint_duration
from transforms.io.endpoint import Endpoint
from transforms.io.redis.text import KeyTemplate
from transforms.io.registry import make_loader
from transforms.message import Record

__all__ = ["SideInputEnrich"]

log = logging.getLogger(__name__)
LOAD_FAILURES = metrics.ENRICH_LOAD_FAILURES


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
class _JoinFn(SettlingFn):
    """A `Block` of `Record`s + the side input table -> a `Block` of the enriched records.

    A record whose row is found is merged at once (most records); the others are settled by
    `Settler.settle` and its policies, their dead letters going to `ERRORS` one by one. A block
    whose records were all settled otherwise gives no block.
    """

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
