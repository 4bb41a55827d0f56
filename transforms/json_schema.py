"""Records checked against a JSON Schema document by a maintained validator (fastjsonschema).

Every keyword of the document counts (``enum``, ``minimum``, ``pattern``, ``maxLength``,
``required`` at any depth, ``additionalProperties``, ``format``...), with JSON Schema's own
rules: a field is unknown only where ``additionalProperties`` (or ``unevaluatedProperties``)
says so. fastjsonschema compiles the document to Python once per worker; it was the fastest
validator that honours the keywords on the suite's benchmark (``python -m bench.validators``:
about 26 times ``jsonschema``). ``default`` values are not filled in: a record is kept as sent.

A failure raises `SchemaViolation` naming the path, e.g. ``$.user.age: must be >= 0``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import fastjsonschema

from transforms.errors import SchemaViolation

__all__ = ["JsonSchemaCheck"]

MAX_MESSAGE_CHARS = 300
_BOUNDS = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}


def _path(name: str) -> str:
    """``data.user.tags[1]`` (fastjsonschema's name of a value) -> ``$.user.tags[1]``."""
    return "$" + name.removeprefix("data")


def _problem(error: fastjsonschema.JsonSchemaValueException) -> str:
    """Returns ``PATH: what is wrong`` for a validation error."""
    name = error.name or "data"
    rule, definition, value = error.rule, error.rule_definition, error.value
    if rule == "required" and isinstance(value, dict) and isinstance(definition, list):
        missing = next((key for key in definition if key not in value), "?")
        return f"{_path(name)}.{missing}: is required"
    if rule == "additionalProperties" and isinstance(value, dict):
        extra = re.search(r"\{(.*)\} properties$", error.message or "")
        first = sorted(extra[1].split(", "))[0].strip("'\"") if extra else ""
        return f"{_path(name)}.{first}: is not allowed" if first else f"{_path(name)}: {rule}"
    if rule in _BOUNDS and not isinstance(definition, bool):
        return f"{_path(name)}: must be {_BOUNDS[rule]} {definition}"
    text = (error.message or "").removeprefix(name).strip() or f"breaks {rule}"
    return f"{_path(name)}: {text}"


class JsonSchemaCheck:
    """Checks a record (a dict) against a JSON Schema document and returns it.

    Args:
        document: the JSON Schema, as decoded from its file.
        drop: remove the fields this function finds undeclared after a record passes
            (``--unknown_fields=drop``); ``None`` keeps every field the document allows.

    Raises:
        ValueError: the document is not a schema the validator can compile.
    """

    def __init__(
        self, document: Mapping[str, Any], drop: Callable[[dict], dict] | None = None
    ) -> None:
        self._document = dict(document)
        self._drop = drop
        self._validate: Callable[[Any], Any] | None = None
        self._compiled()  # fails here, before any record, on a broken document

    def _compiled(self) -> Callable[[Any], Any]:
        if self._validate is None:
            try:
                self._validate = fastjsonschema.compile(self._document, use_default=False)
            except (fastjsonschema.JsonSchemaDefinitionException, re.error) as exc:
                raise ValueError(f"not a usable JSON Schema: {exc}") from None
        return self._validate

    def __getstate__(self) -> dict[str, Any]:
        # The compiled function is generated code: compiled again where it is unpickled.
        return {**self.__dict__, "_validate": None}

    def __call__(self, record: dict) -> dict:
        """Returns ``record`` (undeclared fields dropped if asked); raises `SchemaViolation`."""
        try:
            self._compiled()(record)
        except fastjsonschema.JsonSchemaValueException as error:
            message = _problem(error)
            if len(message) > MAX_MESSAGE_CHARS:
                message = message[: MAX_MESSAGE_CHARS - 3] + "..."
            raise SchemaViolation(message) from None
        return record if self._drop is None else self._drop(record)
