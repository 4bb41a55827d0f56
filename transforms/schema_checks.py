"""How a `transforms.schema.Schema` checks a record: one check per field, built once per schema.

A check takes a value and its path (``user.tags[2]``), returns the value (a nested record
without its undeclared fields when they are dropped) and raises `SchemaViolation` naming the
path and the problem.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from transforms.errors import BadTimestamp, SchemaViolation
from transforms.event_time import parse_timestamp

if TYPE_CHECKING:  # only for annotations: transforms.schema imports this module
    from transforms.schema import Field, UnknownFields

Check = Callable[[Any, str], Any]


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
        record = record_check(spec.fields, unknown_fields)

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


def record_check(
    fields: tuple[Field, ...], unknown_fields: UnknownFields, checked: frozenset[str] = frozenset()
) -> Any:
    """Returns the check of a record with ``fields``: ``check(record, prefix="") -> record``.

    Fields named in ``checked`` are declared but not checked (the caller found them valid).
    """
    declared = frozenset(f.name for f in fields)
    fields = tuple(f for f in fields if f.name not in checked)
    checks = [(f.name, _field_check(f, unknown_fields)) for f in fields]
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
