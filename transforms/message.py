"""The source-neutral envelope every source emits, and the parsed record that keeps it.

A `Message` travels with its record until the record is written, so a failure at any step, the
sink included, can be dead-lettered with the original bytes and where they came from.

`Origin`, `Oversize`, `Message` and `Record` are immutable structs (``msgspec.Struct``) that
Python's cyclic garbage collector does not track (``gc=False``). Blocks hold a thousand of them
through several steps, long enough to outlive the collector's young generations: tracked, they
made it run full collections of everything the process holds (a quarter of a stream job's CPU
time). They cannot form reference cycles (they hold bytes, text, numbers, each other, and dicts
of JSON values), so the collector has nothing to find in them. They keep the named-tuple
methods the suite uses (``_fields``, ``_replace``, ``_asdict``); they are not tuples.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

__all__ = ["Message", "Origin", "Oversize", "Record"]


class _FieldNames:
    """``_fields`` of a struct class or instance: its field names, in order."""

    def __get__(self, instance: Any, owner: type[msgspec.Struct]) -> tuple[str, ...]:
        return owner.__struct_fields__


class _Envelope(msgspec.Struct, frozen=True, gc=False):
    """The base of this module's structs: immutable, untracked, with named-tuple methods."""

    _fields: ClassVar[_FieldNames] = _FieldNames()

    def _replace(self, **changes: Any) -> Any:
        """A copy with ``changes`` (field name -> value), as a named tuple's ``_replace``."""
        return msgspec.structs.replace(self, **changes)

    def _asdict(self) -> dict[str, Any]:
        """Every field (name -> value), as a named tuple's ``_asdict``."""
        return {name: getattr(self, name) for name in self.__struct_fields__}


class Origin(_Envelope, frozen=True, gc=False):
    """Where a message came from: the system and its coordinates there.

    Only the fields of the message's own system are set; the others stay ``None``. The shape is
    fixed so that it maps one to one onto the dead-letter record's ``source`` column.
    """

    system: str
    message_id: str | None = None
    publish_time: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    stream: str | None = None
    shard: str | None = None
    sequence: str | None = None
    path: str | None = None
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Returns the coordinates that are set, as a plain dict (``system`` always)."""
        return {name: value for name, value in self._asdict().items() if value is not None}


class Oversize(_Envelope, frozen=True, gc=False):
    """A payload too large to keep whole: its full size in bytes and its SHA-256 (hex)."""

    size: int
    sha256: str


class Message(_Envelope, frozen=True, gc=False):
    """One input message, as read, before any parsing.

    Attributes:
        payload: the original bytes, never altered; only a prefix of them when ``oversize``
            is set.
        attributes: string key/value metadata (Pub/Sub attributes, Kafka headers, ...).
        origin: the source system and the message's coordinates there.
        oversize: set by a source that did not keep a payload over its size limit whole
            (the file source, for a line over ``--max_payload_bytes``): Parse dead-letters
            the message as ``too_large`` with this size and hash.

    """

    payload: bytes
    attributes: dict[str, str]
    origin: Origin
    oversize: Oversize | None = None


class Record(_Envelope, frozen=True, gc=False):
    """A parsed record together with the message it came from.

    Attributes:
        data: the record, a JSON-like dict such as ``{"user_id": "u1", "amount": 3.5}``.
        origin: the message the record was parsed from, or ``None`` for derived records
            (aggregates, error records) that have no single original message.
        event_time: the record's event time in epoch seconds, when it has one (set by Parse
            from ``--event_time_field``, by an aggregation to its window's end); records travel
            in blocks, so a record's time goes with it rather than in Beam's element timestamp.

    """

    data: dict[str, Any]
    origin: Message | None = None
    event_time: float | None = None
