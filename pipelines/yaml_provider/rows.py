"""Beam Rows <-> the suite's `Message`s, `Record`s and dead letters, for the Beam YAML provider.

Beam YAML passes Rows with schemas between transforms; the suite's steps take `Block`s of
`Message`s and `Record`s. The adapters of this package convert at their edges:

- a message row: ``Row(payload=b'{"user_id": "u1"}', attributes={"k": "v"}, source=Row(system=
  "file", path="/in.jsonl", line=7, ...), oversize=None)`` (`MESSAGE_TYPE`); Parse also takes a
  row whose payload is text, and rows of Beam's own sources (``line`` of ``ReadFromText``);
- a record row: the record's fields, typed from a schema when one is known (`RowShape`), plus,
  when Parse keeps it, ``message_origin``: the message row it was parsed from, so that a later
  step's dead letter still carries the original bytes; the record's event time is the
  element's timestamp;
- a dead-letter row: the fields of `transforms.dead_letter` (`DEAD_LETTER_TYPE`), original bytes
  in ``payload_bytes``.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import TimestampedValue
from apache_beam.typehints.row_type import RowTypeConstraint
from apache_beam.utils.timestamp import MIN_TIMESTAMP

from transforms.blocks import Batch, Block
from transforms.dead_letter import DEAD_LETTER_SCHEMA
from transforms.message import Message, Origin, Oversize, Record
from transforms.schema import Field, Schema

__all__ = [
    "DEAD_LETTER_TYPE",
    "MESSAGE_ORIGIN",
    "MESSAGE_TYPE",
    "RowShape",
    "BlocksToRows",
    "RowsToBlocks",
    "as_data",
    "dead_letter_row",
    "message_of",
    "message_row",
]

MESSAGE_ORIGIN = "message_origin"

_SCALARS: dict[str, Any] = {
    "STRING": str, "DATE": str, "TIME": str, "DATETIME": str, "GEOGRAPHY": str,
    "INTEGER": int, "FLOAT": float, "BOOLEAN": bool,
}  # fmt: skip
# Types whose parsed JSON values vary (a TIMESTAMP is text or an epoch number...); the values a
# step makes (window bounds, dead letters) are text and bytes.
_DERIVED = {"TIMESTAMP": str, "BYTES": bytes}
# The field option of a row type naming each field's declared type, which its Python type hint
# cannot tell (a TIMESTAMP or a DATE held as text, a NUMERIC as any value), so that a sink
# creating a table from the rows' types (`RowShape.of`) gives the column its declared type.
TYPE_OPTION = "bigquery_type"


def _python_type(field: Field, derived: bool) -> Any:
    if field.type == "RECORD":
        kind: Any = _row_type(field.fields, derived)
    elif derived and field.type in _DERIVED:
        kind = _DERIVED[field.type]
    else:
        kind = _SCALARS.get(field.type, Any)
    if field.mode == "REPEATED":
        return typing.Optional[typing.Sequence[kind]]  # noqa: UP045 (a runtime type hint)
    if field.mode == "REQUIRED" or kind is Any:
        return kind
    return typing.Optional[kind]  # noqa: UP045


def _row_type(
    fields: Sequence[Field],
    derived: bool,
    extra: Sequence[tuple[str, Any]] = (),
    loose: frozenset[str] = frozenset(),
) -> RowTypeConstraint:
    """The row type of ``fields`` (then ``extra``), each field's declared type an option.

    The fields named in ``loose`` take any value (``Any``) whatever their declared type.
    """
    return RowTypeConstraint.from_fields(
        [(f.name, Any if f.name in loose else _python_type(f, derived)) for f in fields]
        + list(extra),
        field_options={f.name: [(TYPE_OPTION, f.type)] for f in fields},
    )


def _field_of(name: str, hint: Any, options: Sequence[tuple[str, Any]] = ()) -> Field:
    """The suite field of a Row field's type hint and options (schema-less values: JSON).

    The type is the declared one (`TYPE_OPTION`) when the row type gives it.
    """
    declared = dict(options).get(TYPE_OPTION)
    mode = "REQUIRED"
    if typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint):
        mode = "NULLABLE"
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if typing.get_origin(hint) in (list, Sequence, typing.Sequence) or (
        hasattr(hint, "inner_type") and not isinstance(hint, RowTypeConstraint)
    ):
        item = getattr(hint, "inner_type", None) or typing.get_args(hint)[0]
        inner = _field_of(name, item, options)
        return Field(name, inner.type, "REPEATED", inner.fields)
    if isinstance(hint, RowTypeConstraint):
        fields = tuple(_field_of(n, t, hint.field_options(n)) for n, t in hint._fields)
        return Field(name, "RECORD", mode, fields)
    kinds = {str: "STRING", int: "INTEGER", float: "FLOAT", bool: "BOOLEAN", bytes: "BYTES"}
    if isinstance(declared, str) and declared != "RECORD":
        return Field(name, declared, mode if hint in kinds else "NULLABLE")
    return Field(name, kinds.get(hint, "JSON"), mode if hint in kinds else "NULLABLE")


def _origin_fields() -> tuple[Field, ...]:
    integers = ("partition", "offset", "line")
    return tuple(
        Field(
            name,
            "INTEGER" if name in integers else "STRING",
            "REQUIRED" if index == 0 else "NULLABLE",
        )
        for index, name in enumerate(Origin._fields)
    )


_ORIGIN = Field("source", "RECORD", fields=_origin_fields())
_OVERSIZE = Field(
    "oversize", "RECORD", fields=(Field("size", "INTEGER"), Field("sha256", "STRING"))
)
_MESSAGE_FIELDS: list[tuple[str, Any]] = [
    ("payload", bytes),
    ("attributes", typing.Optional[typing.Mapping[str, str]]),  # noqa: UP045
    ("source", _python_type(_ORIGIN, True)),
    ("oversize", _python_type(_OVERSIZE, True)),
]
MESSAGE_TYPE = RowTypeConstraint.from_fields(_MESSAGE_FIELDS)
DEAD_LETTER_TYPE = _row_type(DEAD_LETTER_SCHEMA.fields, derived=True)


def _to_value(value: Any, field: Field | None) -> Any:
    """A JSON-like value as a Row value: objects become Rows (a RECORD's with all its fields)."""
    if isinstance(value, dict):
        if field is not None and field.type == "RECORD":
            return beam.Row(**{f.name: _to_value(value.get(f.name), f) for f in field.fields})
        return beam.Row(**{str(k): _to_value(v, None) for k, v in value.items()})
    if isinstance(value, list):
        return [_to_value(item, field) for item in value]
    return value


def as_data(value: Any) -> Any:
    """A Row value as a JSON-like value: Rows (and named tuples) become dicts, recursively."""
    if hasattr(value, "_asdict"):
        return {k: as_data(v) for k, v in value._asdict().items()}
    if isinstance(value, Mapping):
        return {k: as_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_data(item) for item in value]
    return value


def message_row(message: Message) -> beam.Row:
    """The row of a message (`MESSAGE_TYPE`)."""
    oversize = message.oversize
    return beam.Row(
        payload=message.payload,
        attributes=dict(message.attributes),
        source=_to_value(message.origin._asdict(), _ORIGIN),
        oversize=None if oversize is None else beam.Row(size=oversize.size, sha256=oversize.sha256),
    )


def _attributes(value: Any) -> dict[str, str]:
    """Attributes given as a map, a Row or a list of ``{key, value}``."""
    data = as_data(value) or {}
    if isinstance(data, list):
        return {str(item["key"]): str(item["value"]) for item in data}
    return {str(k): str(v) for k, v in data.items()}


def message_of(data: Mapping[str, Any], payload_field: str = "payload") -> Message:
    """The `Message` of a message row's data (a text payload is taken as UTF-8).

    Raises:
        ValueError: the row has no such payload field.
    """
    if payload_field not in data:
        raise ValueError(
            f"Parse: input rows have no field {payload_field!r} (fields: {sorted(data)}); "
            "set payload_field"
        )
    payload = data[payload_field]
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    source = data.get("source") or {"system": "beam_yaml"}
    origin = Origin(**{k: v for k, v in source.items() if k in Origin._fields})
    oversize = data.get("oversize")
    return Message(
        bytes(payload or b""),
        _attributes(data.get("attributes")),
        origin,
        None if oversize is None else Oversize(oversize["size"], oversize["sha256"]),
    )


@dataclass(frozen=True)
class RowShape:
    """What a record row holds: its fields (a schema, or any JSON object) and its origin.

    Attributes:
        schema: the record's fields; ``None``: any JSON object (rows of no fixed schema).
        origin: rows carry the message they were parsed from in ``message_origin``; ``None``
            (rows of no fixed schema): those whose record has one.
        derived: the values are made by a step (TIMESTAMP fields hold text), not parsed.
        loose: fields that hold any JSON value, whatever the type the schema declares for the
            sinks (a session's copy of a record field the record schema does not type: the
            Python pipeline writes the record's values as they are).
    """

    schema: Schema | None
    origin: bool | None = False
    derived: bool = False
    loose: frozenset[str] = frozenset()

    @classmethod
    def of(cls, element_type: Any) -> RowShape:
        """The shape of a PCollection's rows, from its element type."""
        if not isinstance(element_type, RowTypeConstraint):
            return cls(None, None)
        fields = [(n, t) for n, t in element_type._fields if n != MESSAGE_ORIGIN]
        origin = len(fields) < len(element_type._fields)
        if not fields:
            return cls(None, origin)
        typed = tuple(_field_of(n, t, element_type.field_options(n)) for n, t in fields)
        # Any is the hint of no scalar type but of a loose field (`_python_type`).
        loose = frozenset(
            f.name
            for f, (_, t) in zip(typed, fields, strict=True)
            if t is Any and f.type in _SCALARS
        )
        return cls(Schema(typed), origin, loose=loose)

    def with_fields(self, schema: Schema | None, derived: bool = True) -> RowShape:
        """The same origin with other fields (typed rows of an unknown origin may carry one).

        The fields the schema keeps stay loose.
        """
        origin = True if self.origin is None and schema is not None else self.origin
        loose = self.loose & frozenset(schema.names) if schema is not None else frozenset()
        return RowShape(schema, origin, derived, loose)

    def holds(self, name: str, field: Field) -> bool:
        """Whether these rows' values of field ``name`` are of ``field``'s type in a step's rows.

        A field the rows do not type (or hold as a list, or parse as varying values) holds any
        JSON value.
        """
        found = self.schema.get(name) if self.schema is not None else None
        return (
            found is not None
            and name not in self.loose
            and found.mode != "REPEATED"
            and found.type == field.type
            and (self.derived or field.type not in _DERIVED)
        )

    def element_type(self) -> Any:
        """The rows' type hint (``Any`` without a schema)."""
        if self.schema is None:
            return Any
        origin = [(MESSAGE_ORIGIN, typing.Optional[MESSAGE_TYPE])] if self.origin else []  # noqa: UP045
        return _row_type(self.schema.fields, self.derived, origin, self.loose)

    def row(self, record: Record) -> beam.Row:
        """The row of a record."""
        data = record.data
        if self.schema is None:
            values = {str(k): _to_value(v, None) for k, v in data.items()}
        else:
            values = {f.name: _to_value(data.get(f.name), f) for f in self.schema.fields}
        origin = record.origin
        if self.origin or (self.origin is None and origin is not None):
            values[MESSAGE_ORIGIN] = None if origin is None else message_row(origin)
        return beam.Row(**values)


def _record_of(row: Any, timestamp: Any) -> Record:
    data = as_data(row)
    origin = data.pop(MESSAGE_ORIGIN, None)
    event_time = float(timestamp) if timestamp > MIN_TIMESTAMP else None
    return Record(data, None if origin is None else message_of(origin), event_time)


class _RecordsFn(beam.DoFn):
    def process(self, row: Any, timestamp: Any = beam.DoFn.TimestampParam) -> Iterator[Record]:
        yield _record_of(row, timestamp)


class RowsToBlocks(beam.PTransform):
    """Record rows -> `Block`s of `Record`s (event time: the row's timestamp, if any)."""

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        return rows | "To records" >> beam.ParDo(_RecordsFn()) | "Batch" >> Batch()


class _RowsFn(beam.DoFn):
    def __init__(self, shape: RowShape) -> None:
        self._shape = shape

    def process(self, block: Block) -> Iterator[Any]:
        for record in block:
            row = self._shape.row(record)
            yield row if record.event_time is None else TimestampedValue(row, record.event_time)


class BlocksToRows(beam.PTransform):
    """`Block`s of `Record`s -> rows of ``shape``, each at its record's event time."""

    def __init__(self, shape: RowShape) -> None:
        super().__init__()
        self._shape = shape

    def expand(self, blocks: beam.PCollection) -> beam.PCollection:
        rows = beam.ParDo(_RowsFn(self._shape)).with_output_types(self._shape.element_type())
        return blocks | "To rows" >> rows


_DEAD_LETTER_SHAPE = RowShape(DEAD_LETTER_SCHEMA, derived=True)


def dead_letter_row(letter: dict[str, Any]) -> beam.Row:
    """The row of a dead-letter dict (`DEAD_LETTER_TYPE`)."""
    return _DEAD_LETTER_SHAPE.row(Record(letter))
