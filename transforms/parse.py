"""Parse: JSON payloads into records, validated against a schema, carrying their event time.

Parse takes `Block`s of `Message`s (every source's output) and returns Blocks of `Record`s. Every
input message lands in exactly one of two outputs: a `Record` whose ``event_time`` is read from
the configured field or attribute, or a dead-letter record whose reason is one of ``too_large``,
``invalid_utf8``, ``invalid_json``, ``not_an_object``, ``schema`` or ``bad_timestamp``.

Without an event time (``--event_time_field=none``) a record's ``event_time`` is ``None`` and its
time is the source's: the timestamp of its block, which is the oldest source timestamp (publish
time, Kafka record time, Kinesis arrival time...) of the messages read in one bundle with it, so
never later than its own; `transforms.blocks.Unbatch` leaves such a record at that time. What
uses it downstream (a CDC delete marker's retention, a dead letter's ``event_timestamp``) needs
no finer time than a bundle's. A file read has no source timestamps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import msgspec

from transforms.blocks import Block
from transforms.dead_letter import FAILED, ToDeadLetter, map_block
from transforms.errors import BadTimestamp, InvalidJson, InvalidUtf8, NotAnObject, TooLarge
from transforms.event_time import EpochUnit, parse_timestamp
from transforms.message import Message, Record
from transforms.schema import Schema, UnknownFields

__all__ = [
    "DEFAULT_MAX_BYTES",
    "EventTime",
    "ParseJson",
    "parse_message",
]

DEFAULT_MAX_BYTES = 1_000_000


@dataclass(frozen=True)
class EventTime:
    """Where a record's event time comes from.

    Attributes:
        field: a field of the record, dotted for nested fields (``"meta.ts"``).
        attribute: a message attribute, used when ``field`` is not set.
        unit: the unit of epoch numbers (``auto`` guesses seconds, millis or micros).

    """

    field: str | None = None
    attribute: str | None = None
    unit: EpochUnit = "auto"

    def __post_init__(self) -> None:
        if (self.field is None) == (self.attribute is None):
            raise ValueError("event time comes from exactly one of a field or an attribute")
        if self.unit not in ("auto", "s", "ms", "us"):
            raise ValueError(f"event time unit {self.unit!r}: use auto, s, ms or us")

    @classmethod
    def parse(cls, spec: str, unit: EpochUnit = "auto") -> EventTime:
        """Reads ``"ts"`` (a field), ``"meta.ts"`` (nested) or ``"attribute:ts"``."""
        if spec.startswith("attribute:"):
            return cls(attribute=spec.removeprefix("attribute:"), unit=unit)
        return cls(field=spec, unit=unit)

    def read(self, data: dict[str, Any], attributes: dict[str, str]) -> float:
        """Returns the event time in epoch seconds.

        Raises:
            BadTimestamp: the time is not there or cannot be read; the message names the
                field (or attribute).
        """
        value: Any
        if self.attribute is not None:
            value = attributes.get(self.attribute)
        else:
            field = self.field or ""
            if "." not in field:  # the common case, read directly
                value = data.get(field)
            else:
                value = data
                for part in field.split("."):
                    value = value.get(part) if isinstance(value, dict) else None
        try:
            return parse_timestamp(value, self.unit)
        except BadTimestamp as exc:
            where = f"attribute {self.attribute!r}" if self.attribute else f"field {self.field!r}"
            raise BadTimestamp(f"event time {where}: {exc}") from None


class _Parser:
    """The per-message parse; builds its decoder lazily so that it pickles to any worker."""

    def __init__(
        self,
        schema: Schema | None,
        event_time: EventTime | None,
        max_bytes: int,
        unknown_fields: UnknownFields,
    ) -> None:
        self._validate = None
        if schema is not None:
            self._validate = schema.validator(unknown_fields, _read_first(schema, event_time))
        self._event_time = event_time
        self._max_bytes = max_bytes
        self._decoder: msgspec.json.Decoder | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_decoder": None}

    def __call__(self, message: Message) -> Record:
        """Returns the record of ``message``, with its event time; raises `RecordError`."""
        payload = message.payload
        if len(payload) > self._max_bytes or message.oversize is not None:
            size = len(payload) if message.oversize is None else message.oversize.size
            raise TooLarge(f"payload of {size} bytes exceeds the limit of {self._max_bytes}")
        if self._decoder is None:
            self._decoder = msgspec.json.Decoder()
        try:
            data = self._decoder.decode(payload)
        except UnicodeDecodeError:
            _raise_for_bytes(payload)
            raise InvalidUtf8("payload is not valid UTF-8") from None
        except msgspec.DecodeError as exc:
            _raise_for_bytes(payload)
            if not payload.strip():
                raise InvalidJson("payload is empty (or only white space), not JSON") from None
            raise InvalidJson(f"payload is not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidJson("payload is JSON nested too deeply") from None
        if not isinstance(data, dict):
            raise NotAnObject(f"payload is JSON {type(data).__name__}, expected an object")
        event_time = None
        if self._event_time is not None:
            event_time = self._event_time.read(data, message.attributes)
        if self._validate is not None:
            data = self._validate(data)
        return Record(data, message, event_time)


def _read_first(schema: Schema, event_time: EventTime | None) -> frozenset[str]:
    """The field the event time reads when its schema check would only repeat that read.

    A top-level TIMESTAMP field read as the event time with the unit guessed, as the schema
    check reads it: a record whose event time was read has that field present and valid.
    """
    if event_time is None or event_time.field is None or event_time.unit != "auto":
        return frozenset()
    field = schema.get(event_time.field)
    if field is None or field.type != "TIMESTAMP" or field.mode == "REPEATED":
        return frozenset()
    return frozenset({field.name})


def _raise_for_bytes(payload: bytes) -> None:
    """Raises `InvalidUtf8` when undecodable JSON is also not UTF-8 (the truer reason)."""
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidUtf8(f"payload is not valid UTF-8: {exc.reason} at byte {exc.start}") from None


def parse_message(
    message: Message,
    schema: Schema | None = None,
    event_time: EventTime | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Record:
    """Parses one message outside a pipeline (for tests and tools); raises `RecordError`."""
    return _Parser(schema, event_time, max_bytes, "reject")(message)


@beam.typehints.with_output_types(Block)
class _ParseFn(beam.DoFn):
    """A block of `Message`s -> one block of their `Record`s; failures tagged `FAILED`."""

    def __init__(self, parser: _Parser) -> None:
        self._parser = parser

    def process(self, block: list[Message]) -> Iterator[Any]:
        parsed, failures = map_block(block, self._parser)  # every failure is dead-lettered
        yield from failures
        if parsed:
            yield parsed


class ParseJson(beam.PTransform):
    """Parses `Message` payloads as JSON objects into `Record`s, a block at a time.

    Input elements are `Block`s of `Message`s. The transform returns ``(records, errors)``:
    ``records`` are Blocks of `Record`s (``Record(data={"user_id": "u1", ...}, origin=<the
    Message>, event_time=1764064800.0)``, ``event_time`` ``None`` without ``event_time``), each
    in its input block's window and at its timestamp; ``errors`` are dead-letter dicts (see
    `transforms.dead_letter`), one element each.

    Args:
        pipeline: the pipeline's name, for the dead-letter records.
        schema: validates every record (types, required fields, nesting); ``None`` accepts any
            JSON object.
        event_time: where the event time is read; ``None`` leaves records at their block's
            time (see this module).
        max_bytes: larger payloads are dead-lettered as ``too_large`` before decoding.
        unknown_fields: fields the schema does not declare are rejected, dropped or kept.

    """

    def __init__(
        self,
        pipeline: str,
        schema: Schema | None = None,
        event_time: EventTime | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        unknown_fields: UnknownFields = "reject",
    ) -> None:
        super().__init__()
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        if unknown_fields not in ("reject", "drop", "keep"):
            raise ValueError(f"unknown_fields {unknown_fields!r}: use reject, drop or keep")
        self._pipeline = pipeline
        self._parser = _Parser(schema, event_time, max_bytes, unknown_fields)

    def expand(self, blocks: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        results = blocks | "Decode" >> beam.ParDo(_ParseFn(self._parser)).with_outputs(
            FAILED, main="parsed"
        )
        errors = results[FAILED] | "ToDeadLetter" >> ToDeadLetter(self._pipeline, "parse")
        return results.parsed, errors
