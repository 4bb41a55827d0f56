"""A record schema declared once: it validates parsed records and creates the BigQuery table.

Loaded from a BigQuery-style schema file (``[{"name", "type", "mode", "fields"}]`` or
``{"fields": [...]}``) or from a JSON Schema document (``{"type": "object", "properties": ...}``).
A JSON Schema gives the fields (for tables and files) and validates records itself, every
keyword counting (`transforms.json_schema`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from transforms.errors import BadTimestamp, SchemaViolation
from transforms.event_time import parse_timestamp
from transforms.json_schema import JsonSchemaCheck

__all__ = ["Field", "Schema", "UnknownFields"]

UnknownFields = Literal["reject", "drop", "keep"]

_TYPE_ALIASES = {
    "INT64": "INTEGER",
    "FLOAT64": "FLOAT",
    "BOOL": "BOOLEAN",
    "STRUCT": "RECORD",
    "BIGNUMERIC": "NUMERIC",
}
_TYPES = {
    "STRING", "BYTES", "INTEGER", "FLOAT", "NUMERIC", "BOOLEAN", "TIMESTAMP", "DATE", "TIME",
    "DATETIME", "RECORD", "JSON", "GEOGRAPHY",
}  # fmt: skip
_MODES = {"NULLABLE", "REQUIRED", "REPEATED"}

Check = Callable[[Any, str], Any]


@dataclass(frozen=True)
class Field:
    """One field of a schema.

    Attributes:
        name: the field name.
        type: a BigQuery type (``STRING``, ``INTEGER``, ``FLOAT``, ``RECORD``...; standard SQL
            aliases such as ``INT64`` are accepted and normalized).
        mode: ``NULLABLE``, ``REQUIRED`` or ``REPEATED`` (an array).
        fields: the nested fields of a ``RECORD``.
        description: free text, carried to the BigQuery table.

    """

    name: str
    type: str
    mode: str = "NULLABLE"
    fields: tuple[Field, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not isinstance(self.mode, str):
            raise ValueError(f"field {self.name!r}: type and mode must be strings")
        kind = _TYPE_ALIASES.get(self.type.upper(), self.type.upper())
        object.__setattr__(self, "type", kind)
        object.__setattr__(self, "mode", self.mode.upper())
        if not self.name:
            raise ValueError("a schema field needs a name")
        if kind not in _TYPES:
            raise ValueError(
                f"field {self.name!r}: unknown type {self.type!r}; use one of {sorted(_TYPES)}"
            )
        if self.mode not in _MODES:
            raise ValueError(
                f"field {self.name!r}: unknown mode {self.mode!r}; use one of {sorted(_MODES)}"
            )
        if (kind == "RECORD") != bool(self.fields):
            raise ValueError(
                f"field {self.name!r}: a RECORD needs nested fields, and only a RECORD"
            )

    def to_bigquery(self) -> dict[str, Any]:
        """Returns the field in BigQuery's REST ``TableFieldSchema`` form."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "mode": self.mode}
        if self.fields:
            out["fields"] = [child.to_bigquery() for child in self.fields]
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class Schema:
    """An ordered set of fields that records must match.

    Attributes:
        fields: the top-level fields.
        json_schema: the JSON Schema document the schema was read from, if any: it, not the
            fields, validates records.

    """

    fields: tuple[Field, ...]
    json_schema: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    _by_name: Mapping[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"schema declares fields more than once: {duplicates}")
        if not self.fields:
            raise ValueError("a schema needs at least one field")
        object.__setattr__(self, "_by_name", {f.name: f for f in self.fields})

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    @property
    def names(self) -> tuple[str, ...]:
        """The top-level field names, in order."""
        return tuple(self._by_name)

    def get(self, name: str) -> Field | None:
        """Returns the top-level field ``name``, or ``None``."""
        return self._by_name.get(name)

    @classmethod
    def from_bigquery(cls, fields: Sequence[Mapping[str, Any]]) -> Schema:
        """Builds a schema from BigQuery ``TableFieldSchema`` dicts."""
        return cls(tuple(_bq_field(f) for f in fields))

    @classmethod
    def from_json_schema(cls, document: Mapping[str, Any]) -> Schema:
        """Builds a schema from a JSON Schema object document (``properties``, ``required``)."""
        if "properties" not in document:
            raise ValueError("a JSON Schema for records needs an object with 'properties'")
        schema = cls(_json_schema_fields(document), json_schema=document)
        JsonSchemaCheck(document)  # a document the validator cannot compile fails here
        return schema

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        """Reads a BigQuery-style or JSON Schema file, telling them apart by their shape."""
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read schema file {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"schema file {path} is not valid JSON: {exc}") from None
        if isinstance(document, list):
            return cls.from_bigquery(document)
        if isinstance(document, dict) and "fields" in document:
            return cls.from_bigquery(document["fields"])
        if isinstance(document, dict) and "properties" in document:
            return cls.from_json_schema(document)
        raise ValueError(
            f"schema file {path}: expected a BigQuery schema (a list of fields, or "
            '{"fields": [...]}) or a JSON Schema object with "properties"'
        )

    def to_bigquery(self) -> list[dict[str, Any]]:
        """Returns the schema as BigQuery REST ``fields``."""
        return [f.to_bigquery() for f in self.fields]

    def validator(self, unknown_fields: UnknownFields = "reject") -> Callable[[dict], dict]:
        """Returns a function that checks a record and returns it (unknown fields handled).

        Args:
            unknown_fields: what to do with fields the schema does not declare: ``reject`` the
                record (BigQuery's own behaviour), ``drop`` the fields, or ``keep`` them. With
                a JSON Schema, its ``additionalProperties`` decides which fields are allowed;
                ``drop`` then removes the undeclared fields of the records it allows.

        The function raises `SchemaViolation` with the field's path and the problem.

        """
        if self.json_schema is not None:
            drop = _undeclared_dropper(self.fields) if unknown_fields == "drop" else None
            return JsonSchemaCheck(self.json_schema, drop)
        return _record_check(self.fields, unknown_fields)


def _undeclared_dropper(fields: tuple[Field, ...]) -> Callable[[dict], dict]:
    """Returns a function that copies a record without the fields ``fields`` do not declare."""
    declared = frozenset(f.name for f in fields)
    nested = {f.name: _undeclared_dropper(f.fields) for f in fields if f.type == "RECORD"}

    def drop(record: dict) -> dict:
        kept = {name: value for name, value in record.items() if name in declared}
        for name, inner in nested.items():
            value = kept.get(name)
            if isinstance(value, dict):
                kept[name] = inner(value)
            elif isinstance(value, list):
                kept[name] = [inner(item) if isinstance(item, dict) else item for item in value]
        return kept

    return drop


def _bq_field(spec: Mapping[str, Any]) -> Field:
    if "name" not in spec or "type" not in spec:
        raise ValueError(f"a BigQuery schema field needs 'name' and 'type': {dict(spec)}")
    return Field(
        name=spec["name"],
        type=spec["type"],
        mode=spec.get("mode", "NULLABLE"),
        fields=tuple(_bq_field(child) for child in spec.get("fields", ())),
        description=spec.get("description", ""),
    )


def _json_schema_fields(document: Mapping[str, Any]) -> tuple[Field, ...]:
    required = set(document.get("required", ()))
    return tuple(
        _json_schema_field(name, prop, name in required)
        for name, prop in document["properties"].items()
    )


def _json_schema_field(name: str, prop: Mapping[str, Any], required: bool) -> Field:
    kinds = prop.get("type", "string")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    nullable = "null" in kinds
    kinds = [k for k in kinds if k != "null"]
    if len(kinds) != 1:
        raise ValueError(f"JSON Schema property {name!r}: use one type (plus 'null'), got {kinds}")
    kind = kinds[0]
    mode = "REQUIRED" if required and not nullable else "NULLABLE"
    if kind == "array":
        item = _json_schema_field(name, prop.get("items", {}), False)
        return Field(name, item.type, "REPEATED", item.fields, prop.get("description", ""))
    if kind == "object":
        if "properties" in prop:
            return Field(
                name, "RECORD", mode, _json_schema_fields(prop), prop.get("description", "")
            )
        return Field(name, "JSON", mode, description=prop.get("description", ""))
    formats = {"date-time": "TIMESTAMP", "date": "DATE", "time": "TIME"}
    simple = {"string": "STRING", "integer": "INTEGER", "number": "FLOAT", "boolean": "BOOLEAN"}
    if kind not in simple:
        raise ValueError(f"JSON Schema property {name!r}: unsupported type {kind!r}")
    bq_type = simple[kind]
    if kind == "string":
        if prop.get("contentEncoding") == "base64":
            bq_type = "BYTES"
        else:
            bq_type = formats.get(prop.get("format", ""), "STRING")
    return Field(name, bq_type, mode, description=prop.get("description", ""))


def _fail(path: str, expected: str, value: Any) -> SchemaViolation:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return SchemaViolation(
        f"field {path!r}: expected {expected}, got {type(value).__name__} {shown}"
    )


def _check_string(value: Any, path: str) -> Any:
    if not isinstance(value, str):
        raise _fail(path, "a string", value)
    return value


def _check_integer(value: Any, path: str) -> Any:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(path, "an integer", value)
    if not -(2**63) <= value < 2**63:
        raise _fail(path, "a 64-bit integer", value)
    return value


def _check_float(value: Any, path: str) -> Any:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _fail(path, "a number", value)
    return value


def _check_numeric(value: Any, path: str) -> Any:
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            raise _fail(path, "a number or numeric string", value) from None
        return value
    return _check_float(value, path)


def _check_boolean(value: Any, path: str) -> Any:
    if not isinstance(value, bool):
        raise _fail(path, "true or false", value)
    return value


def _check_timestamp(value: Any, path: str) -> Any:
    try:
        parse_timestamp(value)
    except BadTimestamp:
        raise _fail(path, "an ISO-8601 timestamp or epoch number", value) from None
    return value


def _check_date(value: Any, path: str) -> Any:
    try:
        dt.date.fromisoformat(_check_string(value, path))
    except ValueError:
        raise _fail(path, "a date YYYY-MM-DD", value) from None
    return value


def _check_any(value: Any, path: str) -> Any:
    return value


_SCALAR_CHECKS: dict[str, Check] = {
    "STRING": _check_string,
    "BYTES": _check_string,
    "GEOGRAPHY": _check_string,
    "TIME": _check_string,
    "DATETIME": _check_string,
    "INTEGER": _check_integer,
    "FLOAT": _check_float,
    "NUMERIC": _check_numeric,
    "BOOLEAN": _check_boolean,
    "TIMESTAMP": _check_timestamp,
    "DATE": _check_date,
    "JSON": _check_any,
}


def _value_check(spec: Field, unknown_fields: UnknownFields) -> Check:
    if spec.type == "RECORD":
        record = _record_check(spec.fields, unknown_fields)

        def check(value: Any, path: str) -> Any:
            if not isinstance(value, dict):
                raise _fail(path, "an object", value)
            return record(value, path + ".")

        return check
    return _SCALAR_CHECKS[spec.type]


def _field_check(spec: Field, unknown_fields: UnknownFields) -> Check:
    item = _value_check(spec, unknown_fields)
    if spec.mode == "REPEATED":

        def check_repeated(value: Any, path: str) -> Any:
            if value is None:
                return value
            if not isinstance(value, list):
                raise _fail(path, "an array", value)
            return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]

        return check_repeated
    required = spec.mode == "REQUIRED"

    def check_single(value: Any, path: str) -> Any:
        if value is None:
            if required:
                raise SchemaViolation(f"field {path!r} is required")
            return value
        return item(value, path)

    return check_single


# Scalar types whose check only looks at the JSON value's type: the exact Python types a JSON
# decoder gives that the check accepts unchanged (bool is its own type, never an int here).
_PLAIN_TYPES: dict[str, tuple[type, ...]] = {
    "STRING": (str,),
    "BYTES": (str,),
    "GEOGRAPHY": (str,),
    "TIME": (str,),
    "DATETIME": (str,),
    "INTEGER": (int,),
    "FLOAT": (int, float),
    "BOOLEAN": (bool,),
}
_INT64 = range(-(2**63), 2**63)


def _checked(record: dict, checks: list[tuple[str, Check]], prefix: str) -> dict:
    """Runs field checks on a record; a check that converts a value replaces it."""
    for name, field_check in checks:
        value = record.get(name)
        checked = field_check(value, prefix + name)
        if checked is not value:
            record[name] = checked
    return record


def _record_check(fields: tuple[Field, ...], unknown_fields: UnknownFields) -> Any:
    checks = [(f.name, _field_check(f, unknown_fields)) for f in fields]
    declared = frozenset(f.name for f in fields)
    # The fast pass: fields with a plain type are only type-tested, the others fully checked;
    # anything the fast pass doubts goes through the full check, which says what is wrong.
    plain = [
        (f.name, _PLAIN_TYPES[f.type], f.mode == "REQUIRED", f.type == "INTEGER")
        for f in fields
        if f.type in _PLAIN_TYPES and f.mode != "REPEATED"
    ]
    plain_names = frozenset(name for name, _, _, _ in plain)
    other = [(name, check) for name, check in checks if name not in plain_names]

    def full(record: dict, prefix: str) -> dict:
        extra = record.keys() - declared
        if extra:
            if unknown_fields == "reject":
                names = ", ".join(repr(prefix + n) for n in sorted(extra)[:5])
                raise SchemaViolation(f"fields not in the schema: {names}")
            if unknown_fields == "drop":
                record = {k: v for k, v in record.items() if k in declared}
        return _checked(record, checks, prefix)

    def check(record: dict, prefix: str = "") -> dict:
        if unknown_fields != "keep" and not record.keys() <= declared:
            return full(record, prefix)
        for name, types, required, integer in plain:
            value = record.get(name)
            if value is None:
                if required:
                    return full(record, prefix)
            elif type(value) not in types or (integer and value not in _INT64):
                return full(record, prefix)
        return _checked(record, other, prefix)

    return check
