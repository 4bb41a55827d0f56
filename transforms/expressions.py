"""A small, safe expression language over record fields (never ``eval``).

Grammar (Python syntax, a strict subset)::

    status_code >= 500 and not (endpoint == "/health")
    amount * 1.2 > 1000 or country in ("DE", "FR")
    user.age >= 18                        # dotted names read nested fields

Names are record fields; a missing field is ``None``. Comparisons and arithmetic involving
``None`` give ``False`` and ``None`` (as in SQL, a missing value matches nothing), so a rule never
raises on incomplete records. Allowed: literals (numbers, strings, true/false/null, tuples and
lists of literals), ``and``/``or``/``not``, ``== != < <= > >= in not in``, ``+ - * / // %`` and
unary minus. Anything else is refused when the expression is compiled, with its position.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Expression", "ExpressionError"]

Evaluator = Callable[[Mapping[str, Any]], Any]

_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_ARITHMETIC: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_CONSTANT_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False,
                   "None": None}  # fmt: skip


class ExpressionError(ValueError):
    """An expression that cannot be compiled; the message names the problem and where."""


@dataclass(frozen=True)
class Expression:
    """A compiled expression.

    Attributes:
        text: the source text.
        fields: the record fields it reads (top-level names).
    """

    text: str
    fields: frozenset[str] = field(init=False)
    _evaluate: Evaluator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            tree = ast.parse(self.text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"{self.text!r}: syntax error at column {exc.offset}") from None
        names: set[str] = set()
        object.__setattr__(self, "_evaluate", _compile(tree.body, self.text, names))
        object.__setattr__(self, "fields", frozenset(names))

    def __call__(self, record: Mapping[str, Any]) -> Any:
        """Evaluates the expression on ``record`` (a dict of fields)."""
        return self._evaluate(record)

    def __getstate__(self) -> dict[str, Any]:
        return {"text": self.text}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "text", state["text"])
        self.__post_init__()


def _refuse(node: ast.AST, text: str, what: str) -> ExpressionError:
    column = getattr(node, "col_offset", 0) + 1
    return ExpressionError(f"{text!r}: {what} is not allowed (column {column})")


def _path(node: ast.AST, text: str) -> list[str] | None:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        parent = _path(node.value, text)
        return None if parent is None else [*parent, node.attr]
    return None


def _literal(node: ast.AST, text: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(
        node.value, (int, float, str, bool, type(None))
    ):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANT_NAMES:
        return _CONSTANT_NAMES[node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(item, text) for item in node.elts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand, text)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value
    raise _refuse(node, text, ast.dump(node).split("(")[0])


def _field_reader(path: list[str]) -> Evaluator:
    if len(path) == 1:
        name = path[0]
        return lambda record: record.get(name)

    def read(record: Mapping[str, Any]) -> Any:
        value: Any = record
        for part in path:
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value

    return read


def _compile(node: ast.AST, text: str, names: set[str]) -> Evaluator:
    path = _path(node, text)
    if path is not None and path[0] not in _CONSTANT_NAMES:
        names.add(path[0])
        return _field_reader(path)
    if isinstance(node, ast.BoolOp):
        parts = [_compile(value, text, names) for value in node.values]
        if isinstance(node.op, ast.And):
            return lambda record: all(bool(part(record)) for part in parts)
        return lambda record: any(bool(part(record)) for part in parts)
    if isinstance(node, ast.UnaryOp):
        operand = _compile(node.operand, text, names)
        if isinstance(node.op, ast.Not):
            return lambda record: not operand(record)
        if isinstance(node.op, ast.USub):
            return lambda record: _negate(operand(record))
        raise _refuse(node, text, "this unary operator")
    if isinstance(node, ast.Compare):
        return _compile_compare(node, text, names)
    if isinstance(node, ast.BinOp):
        op = _ARITHMETIC.get(type(node.op))
        if op is None:
            raise _refuse(node, text, "this operator")
        left, right = _compile(node.left, text, names), _compile(node.right, text, names)
        return lambda record: _arithmetic(op, left(record), right(record))
    value = _literal(node, text)
    return lambda record: value


def _compile_compare(node: ast.Compare, text: str, names: set[str]) -> Evaluator:
    operands = [_compile(node.left, text, names)] + [
        _compile(item, text, names) for item in node.comparators
    ]
    ops = [_COMPARE[type(op)] for op in node.ops]

    def compare(record: Mapping[str, Any]) -> bool:
        left = operands[0](record)
        for op, operand in zip(ops, operands[1:], strict=True):
            right = operand(record)
            if left is None or right is None:
                return False
            try:
                if not op(left, right):
                    return False
            except TypeError:
                return False
            left = right
        return True

    return compare


def _negate(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return -value
    return None


def _arithmetic(op: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    if left is None or right is None:
        return None
    try:
        return op(left, right)
    except (TypeError, ZeroDivisionError, OverflowError):
        return None
