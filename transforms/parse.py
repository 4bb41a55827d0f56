"""Parse: JSON payloads into records, validated against a schema, stamped with their event time.

Every input message lands in exactly one of two outputs: a `Record` (timestamped with its event
time when one is configured) or a dead-letter record whose reason is one of ``too_large``,
``invalid_utf8``, ``invalid_json``, ``not_an_object``, ``schema`` or ``bad_timestamp``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import msgspec
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import TimestampedValue

from transforms.blocks import Block
from transforms.dead_letter import ToDeadLetter, failure
from transforms.errors import BadTimestamp, InvalidJson, InvalidUtf8, NotAnObject, TooLarge
from transforms.event_time import EpochUnit, parse_timestamp
from transforms.message import Message, Record
from transforms.schema import Schema, UnknownFields

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FAILED",
    "EventTime",
    "ParseJson",
    "ParseJsonBlocks",
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
        self._validate = schema.validator(unknown_fields) if schema is not None else None
        self._event_time = event_time
        self._max_bytes = max_bytes
        self._decoder: msgspec.json.Decoder | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_decoder": None}

    def __call__(self, message: Message) -> Record | TimestampedValue:
        record, event_time = self.parse(message)
        return record if event_time is None else TimestampedValue(record, event_time)

    def parse(self, message: Message) -> tuple[Record, float | None]:
        """Returns the record and its event time (``None`` without one); raises `RecordError`."""
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
        return Record(data, message, event_time), event_time


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
) -> Record | TimestampedValue:
    """Parses one message outside a pipeline (for tests and tools); raises `RecordError`."""
    return _Parser(schema, event_time, max_bytes, "reject")(message)


class ParseJson(beam.PTransform):
    """Parses `Message` payloads as JSON objects into `Record`s.

    Input elements are `Message`s. The transform returns ``(records, errors)``: ``records`` are
    `Record`s (``Record(data={"user_id": "u1", ...}, origin=<the Message>)``) timestamped with
    their event time when ``event_time`` is set; ``errors`` are dead-letter dicts (see
    `transforms.dead_letter`).

    Args:
        pipeline: the pipeline's name, for the dead-letter records.
        schema: validates every record (types, required fields, nesting); ``None`` accepts any
            JSON object.
        event_time: where the event time is read; ``None`` keeps the source's timestamps.
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

    def expand(self, messages: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        records, failures = messages | "Decode" >> beam.Map(self._parser).with_exception_handling(
            exc_class=Exception
        )
        errors = failures | "ToDeadLetter" >> ToDeadLetter(self._pipeline, "parse")
        return records, errors


FAILED = "failed"


@beam.typehints.with_output_types(Block)
class _ParseBlockFn(beam.DoFn):
    """A block of `Message`s -> one block of ``(Record, event_time)`` pairs, failures tagged."""

    def __init__(self, parser: _Parser) -> None:
        self._parser = parser

    def process(self, block: list[Message]) -> Iterator[Any]:
        parsed = Block()
        parse = self._parser.parse
        for message in block:
            try:
                parsed.append(parse(message))
            except Exception as exc:  # noqa: BLE001 - every failure is dead-lettered
                yield TaggedOutput(FAILED, failure(message, exc))
        if parsed:
            yield parsed


class ParseJsonBlocks(ParseJson):
    """`ParseJson` over blocks: lists of `Message`s in, lists of parsed records out.

    For bounded fast paths that handle a whole block per element (Beam's per-element cost is
    paid once per block). Each output element is a list of ``(Record, event_time)`` pairs
    (``event_time`` in epoch seconds, or ``None`` without ``event_time``); the records are not
    timestamped, their event times travel beside them. ``errors`` are dead-letter dicts, exactly
    as `ParseJson` makes them. Takes `ParseJson`'s arguments.
    """

    def expand(self, blocks: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        results = blocks | "Decode blocks" >> beam.ParDo(_ParseBlockFn(self._parser)).with_outputs(
            FAILED, main="parsed"
        )
        errors = results[FAILED] | "ToDeadLetter" >> ToDeadLetter(self._pipeline, "parse")
        return results.parsed, errors
