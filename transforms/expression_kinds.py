"""Comparisons of an expression that can never hold, found before any record is read.

An expression (`transforms.expressions`) compares values of kinds that do not compare
(``retry_count < 'a'``: a number and text) as ``False`` for every record, so a filter written
with the wrong kind of literal silently keeps nothing. When the kinds of the fields are known
(a schema), `check_kinds` refuses such an expression instead, naming the field, its declared
type and the value.

Kinds are those of JSON values: ``number``, ``text``, ``bool``, ``list``, ``object``. A field
whose kind is not given, ``null`` and what arithmetic on values of unknown kind gives may be
anything, and are never refused.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass

from transforms.expressions import ExpressionError, parse_bounded

__all__ = ["FieldKind", "check_kinds"]

_CONSTANTS = {"true": "bool", "false": "bool", "True": "bool", "False": "bool"}
_NULLS = ("null", "None")
_NUMBER_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod)


@dataclass(frozen=True)
class FieldKind:
    """The kind of a field's values, and the type it is declared with.

    Attributes:
        kind: ``number``, ``text``, ``bool``, ``list`` or ``object``.
        declared: the declared type, as the user knows it (``INTEGER``, ``TIMESTAMP``...).
    """

    kind: str
    declared: str


@dataclass(frozen=True)
class _Side:
    kind: str
    shown: str  # "retry_count is INTEGER", "'a' is text"


def _path(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        parent = _path(node.value)
        return None if parent is None else f"{parent}.{node.attr}"
    return None


def _constant_kind(value: object) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "text" if isinstance(value, str) else None


def _arithmetic_kind(op: ast.operator, left: str | None, right: str | None) -> str | None:
    if left == right == "number" and isinstance(op, _NUMBER_OPS):
        return "number"
    if left == "text" and (
        isinstance(op, ast.Mod) or (isinstance(op, ast.Add) and right == "text")
    ):
        return "text"
    if isinstance(op, ast.Mult) and {left, right} == {"text", "number"}:
        return "text"
    return None


def _side(node: ast.AST, text: str, kinds: Mapping[str, FieldKind]) -> _Side | None:
    """The kind of what ``node`` gives, and how to name it; None when it may be anything."""
    path = _path(node)
    if path is not None:
        if path in _CONSTANTS:
            return _Side(_CONSTANTS[path], f"{path} is bool")
        known = kinds.get(path)
        return None if known is None else _Side(known.kind, f"{path} is {known.declared}")
    if isinstance(node, ast.Constant):
        kind = _constant_kind(node.value)
        return None if kind is None else _Side(kind, f"{node.value!r} is {kind}")
    shown = ast.get_source_segment(text, node) or "the value"
    kind = None
    if isinstance(node, (ast.Compare, ast.BoolOp)) or (
        isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
    ):
        kind = "bool"
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        operand = _side(node.operand, text, kinds)
        kind = "number" if operand is not None and operand.kind == "number" else None
    elif isinstance(node, ast.BinOp):
        left, right = _side(node.left, text, kinds), _side(node.right, text, kinds)
        kind = _arithmetic_kind(node.op, left.kind if left else None, right.kind if right else None)
    return None if kind is None else _Side(kind, f"{shown} is {kind}")


def _members(node: ast.AST, text: str, kinds: Mapping[str, FieldKind]) -> list[_Side] | None:
    """The sides an ``in`` looks among: a literal tuple's items, or None (unknown)."""
    if not isinstance(node, (ast.Tuple, ast.List)):
        return None
    items = []
    for element in node.elts:
        if isinstance(element, ast.Name) and element.id in _NULLS:
            continue
        side = _side(element, text, kinds)
        if side is None:
            return None
        items.append(side)
    return items


def _check_pair(
    node: ast.Compare, op: ast.cmpop, pair: tuple[ast.AST, ast.AST], text: str,
    kinds: Mapping[str, FieldKind],
) -> None:  # fmt: skip
    left = _side(pair[0], text, kinds)
    if left is None or isinstance(op, (ast.Is, ast.IsNot)):
        return
    if isinstance(op, (ast.In, ast.NotIn)):
        members = _members(pair[1], text, kinds)
        if members and all(member.kind != left.kind for member in members):
            _refuse(node, text, left, members[0])
        container = _side(pair[1], text, kinds)
        if container is not None and container.kind == "text" and left.kind != "text":
            _refuse(node, text, left, container)
        return
    right = _side(pair[1], text, kinds)
    if right is not None and right.kind != left.kind:
        _refuse(node, text, left, right)


def _refuse(node: ast.Compare, text: str, left: _Side, right: _Side) -> None:
    raise ExpressionError(
        f"{text!r}: {left.shown} and {right.shown}: a comparison of {left.kind} with "
        f"{right.kind} never holds (column {node.col_offset + 1})"
    )


def check_kinds(text: str, kinds: Mapping[str, FieldKind]) -> None:
    """Refuses an expression with a comparison whose sides are of kinds that never compare.

    Args:
        text: the expression (it compiles: see `transforms.expressions.Expression`).
        kinds: the kind of the known fields, by dotted path: ``{"retry_count":
            FieldKind("number", "INTEGER"), "source.topic": FieldKind("text", "STRING")}``.

    Raises:
        ExpressionError: ``"'retry_count < 'a'': retry_count is INTEGER and 'a' is text: a
            comparison of number with text never holds (column 1)"``.
    """
    for node in ast.walk(parse_bounded(text)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            for op, left, right in zip(node.ops, sides, sides[1:], strict=False):
                _check_pair(node, op, (left, right), text, kinds)
