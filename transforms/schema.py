"""A record schema declared once: it validates parsed records and creates the BigQuery table.

Loaded from a BigQuery-style schema file (``[{"name", "type", "mode", "fields"}]`` or
``{"fields": [...]}``) or from a JSON Schema document (``{"type": "object", "properties": ...}``).
A JSON Schema gives the fields (for tables and files) and validates records itself, every
keyword counting (`transforms.json_schema`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from transforms.json_schema import JsonSchemaCheck
from transforms.schema_checks import record_check

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

    def validator(
        self, unknown_fields: UnknownFields = "reject", checked: frozenset[str] = frozenset()
    ) -> Callable[[dict], dict]:
        """Returns a function that checks a record and returns it (unknown fields handled).

        Args:
            unknown_fields: what to do with fields the schema does not declare: ``reject`` the
                record (BigQuery's own behaviour), ``drop`` the fields, or ``keep`` them. With
                a JSON Schema, its ``additionalProperties`` decides which fields are allowed;
                ``drop`` then removes the undeclared fields of the records it allows.
            checked: top-level fields the caller has already found present and valid (the
                parse's event time, read before): declared, but not checked again. A JSON
                Schema checks every field.

        The function raises `SchemaViolation` with the field's path and the problem.

        """
        if self.json_schema is not None:
            drop = _undeclared_dropper(self.fields) if unknown_fields == "drop" else None
            return JsonSchemaCheck(self.json_schema, drop)
        return record_check(self.fields, unknown_fields, checked)


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
