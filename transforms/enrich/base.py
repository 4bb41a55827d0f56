"""Enrich (stream-table join): the one contract of the family, and the reference URIs.

Every enrich transform takes `Block`s of `Record`s and returns ``(blocks, errors)``:

* ``blocks``: `Block`s of the input records with their reference rows merged in, as
  `EnrichSettings` says. With ``into="profile"`` a record becomes::

      Record(data={"customer_id": "c1", "amount": 90.0,
                   "profile": {"risk_score": 0.2, "typical_amount": 40.0}},
             origin=<Message>, event_time=1764064800.0)

  With ``prefix="profile_"`` the row's fields become ``profile_risk_score``...; with
  ``prefix=""`` they join the record's own fields (a record field keeps its value when the
  row has a field of the same name).
* ``errors``: dead-letter dicts (`transforms.dead_letter`, step ``enrich``).

The reference row of a record is found by a key template over record fields
(`transforms.io.redis.text.KeyTemplate`, e.g. ``customer:{customer_id}``); the same template,
rendered on each reference row, keys a loaded table.

A record whose key cannot be sent (``bad_key``) or whose row holds bytes that are not UTF-8
(``bad_reference``) is dead-lettered.
When a record has no reference row (or lacks a field of the key), ``missing`` says what happens:
``pass`` emits it with nulls (``into`` set to ``None``, or every declared ``fields`` prefixed
and ``None``), ``drop`` drops it and counts ``dropped.missing_reference``, ``dead_letter``
dead-letters it with reason ``missing_reference``. When the reference cannot be reached (a
timeout after the retries, a side input that never loaded), ``unavailable`` says what happens:
``dead_letter`` (reason ``enrich_unavailable``) or ``missing`` (the ``missing`` policy).

The members of the family:

* `transforms.enrich.redis_lookup.RedisLookup`: a Redis lookup of each record's hash, one pipelined
  round trip per block, with a TTL cache on the worker.
* `transforms.enrich.side_input.SideInputEnrich`: a whole table loaded into a side input (JSON
  Lines, BigQuery, Redis hashes), refreshed on a schedule; a block is joined at a time.
* `transforms.enrich.cdc_table.ChangelogEnrich`: a table kept in keyed state from a CDC stream.

Reference URIs (`enrich_from_uri`)::

    redis://HOST:PORT/DB?key=customer:{customer_id}              per-record lookup (HGETALL)
        &cache_ttl=60s&cache_size=100000&batch_size=500&timeout=1s&attempts=3
    redis://HOST:PORT/DB?key=customer:{customer_id}&mode=snapshot&refresh=5m
                                                                 all matching hashes, side input
    file:///data/customers.jsonl?key={customer_id}&refresh=5m    JSON Lines, side input
    bigquery://PROJECT:DATASET.TABLE?key={customer_id}&refresh=1h  a table, side input

Redis URIs also take ``password_env`` and ``password_secret`` as the Redis sink does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp

from transforms.dead_letter import refused
from transforms.errors import RecordError, SinkRejected
from transforms.io.endpoint import Endpoint, EndpointError
from transforms.io.redis.text import KeyTemplate, to_text
from transforms.io.registry import LOOKUPS, REFERENCES, load_scheme
from transforms.message import Record
from transforms.metrics import DROPPED, ReasonCounters

__all__ = [
    "ERRORS",
    "MISSING_POLICIES",
    "STEP",
    "UNAVAILABLE_POLICIES",
    "EnrichSettings",
    "BadReference",
    "BadReferenceKey",
    "EnrichUnavailable",
    "KeyOf",
    "MissingReference",
    "Settler",
    "enrich_error",
    "enrich_from_uri",
    "key_function",
    "parse_key",
    "reference_key",
]

ERRORS = "errors"
STEP = "enrich"
MISSING_POLICIES = ("pass", "drop", "dead_letter")
UNAVAILABLE_POLICIES = ("dead_letter", "missing")


class MissingReference(RecordError):
    """The record has no reference row (or lacks a field of the key)."""

    reason = "missing_reference"


class BadReferenceKey(RecordError):
    """The record's reference key cannot be sent (text that is not UTF-8, a number too long)."""

    reason = "bad_key"


class BadReference(RecordError):
    """The record's reference row holds a value that cannot be read (bytes that are not UTF-8)."""

    reason = "bad_reference"


class EnrichUnavailable(RecordError):
    """The reference could not be reached (timeouts after the retries, no loaded table)."""

    reason = "enrich_unavailable"


@dataclass(frozen=True)
class EnrichSettings:
    """How reference rows are merged, and what happens when there is none.

    Attributes:
        pipeline: the pipeline's name, for the dead-letter records.
        into: the record field the row is nested under (``None`` when ``prefix`` is used).
        prefix: the prefix of the row's fields merged at the top level (``""``: unprefixed).
        fields: the reference fields kept (all when empty); required with ``prefix`` and the
            ``pass`` policy, which sets each of them to ``None``.
        missing: ``pass``, ``drop`` or ``dead_letter``.
        unavailable: ``dead_letter`` or ``missing`` (apply the ``missing`` policy).
    """

    pipeline: str
    into: str | None = "reference"
    prefix: str | None = None
    fields: tuple[str, ...] = ()
    missing: str = "pass"
    unavailable: str = "dead_letter"

    def __post_init__(self) -> None:
        if (self.into is None) == (self.prefix is None):
            raise ValueError("enrich: merge the row either into a field or with a prefix")
        if self.into is not None and not self.into:
            raise ValueError("enrich: into must name a field")
        if self.missing not in MISSING_POLICIES:
            raise ValueError(f"enrich: missing {self.missing!r}: use one of {MISSING_POLICIES}")
        if self.unavailable not in UNAVAILABLE_POLICIES:
            raise ValueError(
                f"enrich: unavailable {self.unavailable!r}: use one of {UNAVAILABLE_POLICIES}"
            )
        if self.prefix is not None and self.missing == "pass" and not self.fields:
            raise ValueError(
                "enrich: with a prefix and missing=pass, declare the reference fields, so that "
                "records without a reference get them as nulls"
            )

    def merge(self, data: Mapping[str, Any], row: Mapping[str, Any] | None) -> dict[str, Any]:
        """Returns ``data`` with ``row`` merged in (or its nulls when ``row`` is ``None``)."""
        merged = dict(data)
        if row is None:
            kept: dict[str, Any] | None = None
        elif self.fields:
            kept = {name: row.get(name) for name in self.fields}
        else:
            kept = dict(row)
        if self.into is not None:
            merged[self.into] = kept
            return merged
        assert self.prefix is not None
        nulls = dict.fromkeys(self.fields)
        for name, value in (nulls if kept is None else kept).items():
            merged.setdefault(self.prefix + name, value)
        return merged


def parse_key(text: str, where: object) -> KeyTemplate:
    """Parses a reference key template; raises `EndpointError` naming ``where``.

    The template must name at least one field in braces: a constant key (``key=customer``)
    would join every record to one row.
    """
    try:
        template = KeyTemplate.parse(text)
    except ValueError as error:
        raise EndpointError(f"{where}: key: {error}") from None
    if not template.fields:
        fix = (
            f"write key={{{text}}}"
            if text.isidentifier()
            else "name a field in braces, e.g. key={customer_id} or key=customer:{customer_id}"
        )
        raise EndpointError(f"{where}: key={text} names no field: {fix}")
    return template


def reference_key(template: KeyTemplate, data: Mapping[str, Any]) -> str | None:
    """Returns the key ``template`` gives ``data``, or ``None`` when a field is missing."""
    try:
        return template.render(data)
    except SinkRejected:
        return None


KeyOf = Callable[[Mapping[str, Any]], "str | None"]
"""A record's data -> its reference key, or ``None`` when a field of the key is missing."""


def key_function(template: KeyTemplate) -> KeyOf:
    """Returns `reference_key` for ``template`` as a function of the record's data alone.

    The common template of one bare field (``{customer_id}``) is rendered without the
    template's loop, join and exception: its key is the field's text (`to_text`), ``None``
    when the field is missing or null, as `reference_key` gives.
    """
    if len(template.parts) == 1 and not template.parts[0][0] and template.parts[0][1]:
        name = template.parts[0][1]

        def field_key(data: Mapping[str, Any]) -> str | None:
            value = data.get(name)
            if value.__class__ is str:  # most keys: skip to_text's checks
                return value
            return None if value is None else to_text(value)

        return field_key
    return partial(reference_key, template)


def enrich_error(record: Record, error: RecordError, timestamp: Timestamp, pipeline: str) -> dict:
    """Returns the dead-letter dict of a record (or change) the enrich step could not handle.

    Its event time is the record's own, or else ``timestamp`` (its block's).
    """
    event_time = record.event_time
    if event_time is None and timestamp > MIN_TIMESTAMP:
        event_time = float(timestamp)
    return refused(record, pipeline=pipeline, step=STEP, error=error, event_time=event_time)


class Settler:
    """Settles records by the family's contract, into a `Block` (inside a DoFn).

    Args:
        settings: the merge and the policies.
    """

    def __init__(self, settings: EnrichSettings) -> None:
        self.settings = settings
        self._dropped: ReasonCounters | None = None
        # The field a whole row is nested under: the merge most settings ask for.
        self._nested = settings.into if not settings.fields else None

    def settle(
        self,
        record: Record,
        row: Mapping[str, Any] | None,
        timestamp: Timestamp,
        into: list[Record],
        missing: str = "no reference row",
        unavailable: str | None = None,
    ) -> TaggedOutput | None:
        """Appends the enriched record to ``into``, drops it, or returns its dead letter.

        Args:
            record: the input record.
            row: its reference row, or ``None``.
            timestamp: the timestamp of the record's block (for a record without event time).
            into: where the enriched record goes.
            missing: why there is no row, for the dead-letter message.
            unavailable: why the reference could not be reached, if it could not.

        Returns:
            The dead-letter dict on `ERRORS`, or ``None`` (enriched or dropped).
        """
        settings = self.settings
        try:
            if unavailable is not None:
                if settings.unavailable == "dead_letter":
                    raise EnrichUnavailable(unavailable)
                row, missing = None, unavailable
            if row is None and settings.missing == "dead_letter":
                raise MissingReference(missing)
        except RecordError as error:
            return TaggedOutput(ERRORS, enrich_error(record, error, timestamp, settings.pipeline))
        if row is None and settings.missing == "drop":
            if self._dropped is None:
                self._dropped = ReasonCounters(DROPPED)
            self._dropped.inc(MissingReference.reason)
            return None
        into.append(self.enriched(record, row))
        return None

    def enriched(self, record: Record, row: Mapping[str, Any] | None) -> Record:
        """Returns ``record`` with ``row`` merged in: what `settle` appends when it keeps it."""
        nested = self._nested
        if nested is not None and row is not None:  # the common merge, in one expression
            return Record({**record.data, nested: dict(row)}, record.origin, record.event_time)
        return Record(self.settings.merge(record.data, row), record.origin, record.event_time)


class SettlingFn(beam.DoFn):
    """The base of the family's DoFns: records keyed by a template, settled by a `Settler`.

    Args:
        key: the join key, a template rendered on records.
        settings: the merge and the policies.
    """

    def __init__(self, key: KeyTemplate, settings: EnrichSettings) -> None:
        self._key = key
        self._settings = settings

    def setup(self) -> None:
        self._settler = Settler(self._settings)
        self._key_of = key_function(self._key)


def enrich_from_uri(uri: str, settings: EnrichSettings) -> beam.PTransform:
    """Returns the enrich transform a reference URI names (see this module).

    The registry (`transforms.io.registry`) names what reads each scheme: ``LOOKUPS`` the
    per-record lookups (``mode=lookup``, the default where a scheme has one), ``REFERENCES``
    the loaders of whole tables into a side input (``mode=snapshot``).

    Raises:
        EndpointError: the URI cannot work (unknown scheme or mode, no key template...).
    """
    from transforms.enrich.side_input import SideInputEnrich  # which builds on this module

    endpoint = Endpoint.parse(uri)
    if endpoint.scheme not in LOOKUPS and endpoint.scheme not in REFERENCES:
        known = ", ".join(f"{scheme}://" for scheme in sorted({*LOOKUPS, *REFERENCES}))
        raise EndpointError(
            f"{endpoint}: no reference for scheme {endpoint.scheme!r}; known: {known}"
        )
    mode = endpoint.params.get("mode", "lookup" if endpoint.scheme in LOOKUPS else "snapshot")
    if mode not in ("lookup", "snapshot"):
        raise EndpointError(f"{endpoint}: mode must be lookup or snapshot, got {mode!r}")
    if "key" not in endpoint.params:
        raise EndpointError(f"{endpoint}: key=<template> is required, e.g. key={{customer_id}}")
    if mode == "snapshot":
        return SideInputEnrich.from_endpoint(endpoint, settings)
    return load_scheme(LOOKUPS, endpoint, "per-record lookup").from_endpoint(endpoint, settings)
