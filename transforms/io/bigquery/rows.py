"""Rows of a table as protocol buffers for the Storage Write API, built from the table's schema.

The Storage Write API takes rows as serialized protocol buffer messages and the message's
descriptor (``ProtoSchema``). `RowEncoder` builds that descriptor at run time from a `Schema`
(one proto2 field per column, nested messages for ``RECORD``s, ``repeated`` for ``REPEATED``)
and serializes row dicts with it, converting each value to the wire type BigQuery documents
for its column:

=============  ==============================================================
column         value sent
=============  ==============================================================
STRING         string
BYTES          bytes (a ``str`` is read as base64, as the JSON API takes it)
INTEGER        int64
FLOAT          double
BOOLEAN        bool
TIMESTAMP      int64 microseconds since the epoch (from ISO-8601 or epoch numbers)
DATE           int32 days since 1970-01-01
NUMERIC, TIME, DATETIME, GEOGRAPHY   string
JSON           string (a dict or list is serialized)
RECORD         nested message
=============  ==============================================================

A value that cannot become its column's type raises `SinkRejected` naming the field, so that
the sink dead-letters that row alone.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message as ProtoMessage

from transforms.errors import SinkRejected
from transforms.event_time import BadTimestamp, parse_timestamp
from transforms.schema import Field, Schema

__all__ = ["RowEncoder", "UnknownFields", "WrongType"]

_Proto = descriptor_pb2.FieldDescriptorProto
_WIRE_TYPES = {
    "STRING": _Proto.TYPE_STRING,
    "BYTES": _Proto.TYPE_BYTES,
    "INTEGER": _Proto.TYPE_INT64,
    "FLOAT": _Proto.TYPE_DOUBLE,
    "BOOLEAN": _Proto.TYPE_BOOL,
    "TIMESTAMP": _Proto.TYPE_INT64,
    "DATE": _Proto.TYPE_INT32,
    "NUMERIC": _Proto.TYPE_STRING,
    "TIME": _Proto.TYPE_STRING,
    "DATETIME": _Proto.TYPE_STRING,
    "GEOGRAPHY": _Proto.TYPE_STRING,
    "JSON": _Proto.TYPE_STRING,
}
_MIN_INT64, _MAX_INT64 = -(2**63), 2**63 - 1
_EPOCH_DAY = dt.date(1970, 1, 1)


class UnknownFields(SinkRejected):
    """A row has top-level fields the table lacks; ``values`` maps each to the row's value."""

    def __init__(self, values: dict[str, Any]) -> None:
        super().__init__(f"{', '.join(values)}: no such field in the table")
        self.values = values


class WrongType(SinkRejected):
    """A value its column's type cannot take; ``path`` names the field (``geo.lat``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class _Wrong(ValueError):
    """A value that its column's type cannot hold (the message says what was expected)."""


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Wrong("text")
    return value


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return base64.b64decode(_text(value), validate=True)
    except binascii.Error:
        raise _Wrong("base64 text") from None


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Wrong("an integer")
    try:
        number = int(value) if not isinstance(value, float) or value.is_integer() else None
    except ValueError:
        number = None
    if number is None or not _MIN_INT64 <= number <= _MAX_INT64:
        raise _Wrong("a 64-bit integer")
    return number


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Wrong("a number")
    try:
        return float(value)
    except OverflowError:
        raise _Wrong("a number a double can hold") from None


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Wrong("true or false")
    return value


def _timestamp(value: Any) -> int:
    try:
        seconds = parse_timestamp(value)
    except BadTimestamp:
        raise _Wrong("an ISO-8601 timestamp or epoch number") from None
    if not math.isfinite(seconds):
        raise _Wrong("a finite time")
    return round(seconds * 1_000_000)


def _date(value: Any) -> int:
    try:
        return (dt.date.fromisoformat(_text(value)) - _EPOCH_DAY).days
    except ValueError:
        raise _Wrong("a date YYYY-MM-DD") from None


def _numeric(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Wrong("a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Wrong("a finite number")
    return str(value)


def _json(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise _Wrong("a JSON value") from None


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "STRING": _text,
    "BYTES": _bytes,
    "INTEGER": _integer,
    "FLOAT": _float,
    "BOOLEAN": _boolean,
    "TIMESTAMP": _timestamp,
    "DATE": _date,
    "NUMERIC": _numeric,
    "TIME": _text,
    "DATETIME": _text,
    "GEOGRAPHY": _text,
    "JSON": _json,
}


def _message_type(name: str, fields: tuple[Field, ...]) -> descriptor_pb2.DescriptorProto:
    """Returns the proto2 message of a row (or of a RECORD), nested messages inside it."""
    message = descriptor_pb2.DescriptorProto(name=name)
    for number, spec in enumerate(fields, start=1):
        label = _Proto.LABEL_REPEATED if spec.mode == "REPEATED" else _Proto.LABEL_OPTIONAL
        field = message.field.add(name=spec.name, number=number, label=label)
        if spec.type == "RECORD":
            nested = f"F{number}"
            message.nested_type.append(_message_type(nested, spec.fields))
            field.type = _Proto.TYPE_MESSAGE
            field.type_name = nested
        else:
            field.type = _WIRE_TYPES[spec.type]
    return message


class RowEncoder:
    """Serializes row dicts of one table schema as protocol buffer rows.

    Attributes:
        schema: the table's schema.
        descriptor: the row message's ``DescriptorProto`` (self-contained: nested messages
            inside it), the ``ProtoSchema`` of append requests.
    """

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.descriptor = _message_type("Row", schema.fields)
        file_proto = descriptor_pb2.FileDescriptorProto(
            name="row.proto", package="bqrow", syntax="proto2"
        )
        file_proto.message_type.append(self.descriptor)
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file_proto)
        self._row_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("bqrow.Row"))

    def encode(self, row: Mapping[str, Any]) -> bytes:
        """Returns the serialized row.

        Args:
            row: ``{"id": 1, "ts": "2026-11-25T10:00:00Z", "tags": ["a"], "geo": {...}}``; a
                missing key or ``None`` leaves the column NULL.

        Raises:
            SinkRejected: a field the table lacks, or a value its column cannot take; the
                message names the field (``amount: expected a number, got 'x'``).
        """
        message = self._row_class()
        _fill(message, row, self.schema.fields, "")
        return message.SerializeToString()


def _fill(
    message: ProtoMessage, row: Mapping[str, Any], fields: tuple[Field, ...], at: str
) -> None:
    if not isinstance(row, Mapping):
        raise WrongType(at.rstrip(".") or "row", f"expected an object, got {row!r:.60}")
    known = {spec.name for spec in fields}
    unknown = [name for name in row if name not in known]
    if unknown and at:
        raise SinkRejected(f"{at}{unknown[0]}: no such field in the table")
    if unknown:
        raise UnknownFields({name: row[name] for name in unknown})
    for spec in fields:
        value = row.get(spec.name)
        if value is None:
            if spec.mode == "REQUIRED":
                raise SinkRejected(f"{at}{spec.name}: a REQUIRED field is missing")
            continue
        path = f"{at}{spec.name}"
        if spec.mode == "REPEATED":
            if not isinstance(value, (list, tuple)):
                raise WrongType(path, f"expected a list, got {value!r:.60}")
            target = getattr(message, spec.name)
            for index, item in enumerate(value):
                if spec.type == "RECORD":
                    _fill(target.add(), item, spec.fields, f"{path}[{index}].")
                else:
                    target.append(_scalar(spec, item, f"{path}[{index}]"))
        elif spec.type == "RECORD":
            _fill(getattr(message, spec.name), value, spec.fields, f"{path}.")
        else:
            setattr(message, spec.name, _scalar(spec, value, path))


def _scalar(spec: Field, value: Any, path: str) -> Any:
    try:
        return _CONVERT[spec.type](value)
    except _Wrong as wrong:
        raise WrongType(path, f"expected {wrong} for {spec.type}, got {value!r:.60}") from None
