"""The fields a pipeline's own options name, checked on every record.

Without a schema a pipeline accepts any JSON object, so what its options name (group keys and
aggregated fields of a spec, a session key, an enrich join key) is checked per record, right
after Parse (and the UDF, if any): a record without a key field is dead-lettered with reason
``missing_field``, one whose value is of the wrong kind with ``wrong_type``; both at step
``fields``, the message naming the field (dotted for nested fields). Good records pass untouched.

Kinds (`Kind`):

* ``key``: a group, session or join key: present, not null, and a string, number or boolean
  (an object or a list cannot key a group).
* ``number``: an aggregated number (``sum``, ``mean``, ``approx_quantile``): an integer or a
  float; absent or null means "no value", skipped by the aggregate as in SQL.
* ``scalar``: an aggregated value that is compared (``min``, ``max``): a string, number or
  boolean; absent or null skipped.
* ``any``: whatever its value (``approx_count_distinct``, ``latest``); listed for completeness.

A key template of an enrich step (``customer:{customer_id}``) is checked with ``join_key``:
a join field may be missing (the enrich step's ``--on_missing`` says what happens then), but
a present one must be a scalar.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import apache_beam as beam

from transforms.aggregate.spec import AggregateSpec
from transforms.blocks import Block
from transforms.dead_letter import FAILED, ToDeadLetter, map_block
from transforms.errors import RecordError
from transforms.message import Record

__all__ = [
    "STEP",
    "CheckFields",
    "FieldCheck",
    "Kind",
    "MissingField",
    "RequiredField",
    "WrongType",
    "aggregate_fields",
]

STEP = "fields"
Kind = Literal["key", "number", "scalar", "any", "join_key"]
_KINDS = ("key", "number", "scalar", "any", "join_key")
# The kind an aggregate function needs of a bare field argument.
_AGGREGATE_KINDS: dict[str, Kind] = {
    "sum": "number",
    "mean": "number",
    "approx_quantile": "number",
    "min": "scalar",
    "max": "scalar",
    "approx_count_distinct": "any",
    "latest": "any",
}
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_LITERAL_NAMES = frozenset({"true", "false", "null", "True", "False", "None"})
_MISSING = object()


class MissingField(RecordError):
    """The record lacks a field the pipeline's options name."""

    reason = "missing_field"


class WrongType(RecordError):
    """A field the pipeline's options name holds a value of the wrong kind."""

    reason = "wrong_type"


@dataclass(frozen=True)
class RequiredField:
    """A field a pipeline reads, and the kind of value it needs.

    Attributes:
        path: the field's name; ``nested`` paths are dotted (``user.id``).
        kind: the kind of value it needs (see this module).
        why: what reads it, for messages (``group key``, ``sum(amount)``...).
        nested: whether the dots of ``path`` separate nested fields (expressions and event
            times read nested fields; group keys are top-level names, and a spec refuses
            dotted ones, see `transforms.aggregate.spec.AggregateSpec.from_dict`).
    """

    path: str
    kind: Kind
    why: str
    nested: bool = False

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("a required field needs a name")
        if self.kind not in _KINDS:
            raise ValueError(f"field {self.path!r}: kind {self.kind!r}; use one of {_KINDS}")

    def read(self, data: dict[str, Any]) -> Any:
        """Returns the field's value in ``data``, or a sentinel when it is absent."""
        if not self.nested or "." not in self.path:
            return data.get(self.path, _MISSING)
        value: Any = data
        for part in self.path.split("."):
            if not isinstance(value, dict) or part not in value:
                return _MISSING
            value = value[part]
        return value


_SCALARS = frozenset({str, int, float, bool})
_NUMBERS = frozenset({int, float})


def _problem(required: RequiredField, value: Any) -> RecordError | None:
    """Returns the error of a value for a required field, or None when it fits."""
    kind = required.kind
    if value is _MISSING or value is None:
        if kind != "key":
            return None
        what = "has no field" if value is _MISSING else "has null in field"
        return MissingField(f"the record {what} {required.path!r} ({required.why})")
    if kind == "any" or value.__class__ in (_NUMBERS if kind == "number" else _SCALARS):
        return None
    wanted = "a number" if kind == "number" else "a string, number or boolean"
    return WrongType(
        f"field {required.path!r} ({required.why}) must be {wanted}, got "
        f"{type(value).__name__} {_preview(value)}"
    )


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class FieldCheck:
    """Checks records against required fields; raises `MissingField` or `WrongType`.

    Args:
        fields: the required fields; a path named twice with the same kind is checked once.
    """

    def __init__(self, fields: Iterable[RequiredField]) -> None:
        unique: dict[tuple[str, str, bool], RequiredField] = {}
        for required in fields:
            unique.setdefault((required.path, required.kind, required.nested), required)
        self.fields = tuple(unique.values())

    def __bool__(self) -> bool:
        return bool(self.fields)

    def __call__(self, data: dict[str, Any]) -> None:
        for required in self.fields:
            error = _problem(required, required.read(data))
            if error is not None:
                raise error


def aggregate_fields(spec: AggregateSpec, why: str = "") -> tuple[RequiredField, ...]:
    """Returns the fields an aggregation reads: its group keys and bare aggregated fields.

    Group keys are ``key`` fields. An aggregate whose argument is a bare field (``sum(amount)``,
    ``max(user.age)``) needs that field of the kind its function takes; an argument that is an
    expression (``count_if(status >= 500)``, ``sum(price * qty)``) reads fields that may be
    missing (a missing field is null in an expression), so it requires none.

    Args:
        spec: the aggregation.
        why: a prefix for messages, e.g. ``--counts_group_by``.
    """
    prefix = f"{why} " if why else ""
    fields = [RequiredField(name, "key", f"{prefix}group key") for name in spec.group_by]
    for call in spec.aggregates:
        kind = _AGGREGATE_KINDS.get(call.function)
        if kind is None or call.argument is None:
            continue
        text = call.argument.text.strip()
        if _PATH.fullmatch(text) and text.split(".")[0] not in _LITERAL_NAMES:
            fields.append(
                RequiredField(text, kind, f"{prefix}{call.function}({text})", nested=True)
            )
    return tuple(fields)


@beam.typehints.with_output_types(Block)
class _CheckFn(beam.DoFn):
    """A block of `Record`s -> the block of those that pass; the others tagged ``failed``."""

    def __init__(self, check: FieldCheck) -> None:
        self._check = check

    def process(self, block: list[Record]) -> Iterator[Any]:
        passed, failures = map_block(block, self._checked, RecordError)
        yield from failures
        if passed:
            yield passed

    def _checked(self, record: Record) -> Record:
        """Returns ``record`` when it passes; raises `RecordError`."""
        self._check(record.data)
        return record


class CheckFields(beam.PTransform):
    """Checks every `Record` against required fields; failures are dead-lettered.

    Input: `Block`s of `Record`s. Returns ``(blocks, errors)``: Blocks of the records that
    pass, untouched, and dead-letter dicts (step ``fields``, reasons ``missing_field`` and
    ``wrong_type``) of the others.

    Args:
        pipeline: the pipeline's name, for dead-letter records.
        check: the fields to check.
    """

    def __init__(self, pipeline: str, check: FieldCheck) -> None:
        super().__init__()
        self._pipeline = pipeline
        self._check = check

    def expand(self, blocks: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        results = blocks | "Check" >> beam.ParDo(_CheckFn(self._check)).with_outputs(
            FAILED, main="passed"
        )
        errors = results[FAILED] | "ToDeadLetter" >> ToDeadLetter(self._pipeline, STEP)
        return results.passed, errors
