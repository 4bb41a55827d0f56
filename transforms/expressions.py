"""A small, safe expression language over record fields (never ``eval``).

Grammar (Python syntax, a strict subset)::

    status_code >= 500 and not (endpoint == "/health")
    amount * 1.2 > 1000 or country in ("DE", "FR")
    user.age >= 18                        # dotted names read nested fields

Names are record fields; a missing field is ``None``. Comparisons and arithmetic involving
``None`` give ``False`` and ``None`` (as in SQL, a missing value matches nothing), so a rule never
raises on incomplete records; so do comparisons and arithmetic between values of kinds that do
not combine (``"abc" * 1.5``). Allowed: literals (numbers, strings, true/false/null, tuples and
lists of literals), ``and``/``or``/``not``, ``== != < <= > >= in not in``, ``is None`` and
``is not None``, ``+ - * / // %`` and unary minus. Anything else is refused when the expression
is compiled, with its position, as is a text longer than `MAX_SOURCE_CHARS` or nested deeper
than `MAX_DEPTH`.

The cost of evaluating one record is bounded: a string (or tuple) result longer than
`MAX_RESULT_ITEMS`, an integer of more than `MAX_INT_BITS` bits, and a ``%``-format with a width
or precision over `MAX_FORMAT_WIDTH` (or one taken from the arguments, ``%*d``) raise
`ExpressionLimit` before the work is done; a ``%``-format that a value cannot fill
(``"5%" % 100``) raises `BadValue`. Both are a `transforms.errors.RecordError`: the step
evaluating the expression dead-letters that record.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from transforms.errors import RecordError

__all__ = [
    "MAX_DEPTH",
    "MAX_FORMAT_WIDTH",
    "MAX_INT_BITS",
    "MAX_RESULT_ITEMS",
    "MAX_SOURCE_CHARS",
    "BadValue",
    "Expression",
    "ExpressionError",
    "ExpressionLimit",
]

MAX_SOURCE_CHARS = 4_000
MAX_DEPTH = 40
MAX_RESULT_ITEMS = 100_000
MAX_INT_BITS = 1_024
MAX_FORMAT_WIDTH = 1_000

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
_IDENTITY: dict[type, Callable[[Any, Any], bool]] = {
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
# A conversion of a %-format: flags, width and precision (digits or *), then the type.
_FORMAT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?(.?)")
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


class ExpressionLimit(RecordError):
    """Evaluating the expression on this record would build a value over the bounds."""

    reason = "expression_limit"


class BadValue(RecordError):
    """A value of the record that the expression (or the aggregation) cannot use."""

    reason = "bad_value"


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
        tree = parse_bounded(self.text)
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


def parse_bounded(text: str) -> ast.Expression:
    """Parses expression text, refusing text over `MAX_SOURCE_CHARS` or nesting over `MAX_DEPTH`.

    Raises:
        ExpressionError: what is wrong, with a short excerpt of the text.
    """
    shown = repr(text[:60] + ("..." if len(text) > 60 else ""))
    if len(text) > MAX_SOURCE_CHARS:
        raise ExpressionError(
            f"{shown}: the expression has {len(text)} characters; at most {MAX_SOURCE_CHARS}"
        )
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"{shown}: syntax error at column {exc.offset}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError(f"{shown}: nested too deeply (at most {MAX_DEPTH} levels)") from None
    if _depth(tree.body) > MAX_DEPTH:
        raise ExpressionError(f"{shown}: nested too deeply (at most {MAX_DEPTH} levels)")
    return tree


def _depth(node: ast.AST) -> int:
    """Returns the depth of the tree under ``node`` (without recursion)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(current))
    return deepest


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
    ops = []
    for op, right in zip(node.ops, node.comparators, strict=True):
        if type(op) in _IDENTITY:
            if not (isinstance(right, ast.Constant) and right.value is None) and not (
                isinstance(right, ast.Name) and right.id in ("null", "None")
            ):
                raise _refuse(node, text, "'is' with anything but None")
            ops.append(_IDENTITY[type(op)])
        elif type(op) in _COMPARE:
            ops.append(_COMPARE[type(op)])
        else:
            raise _refuse(node, text, "this comparison")

    steps = [
        (op, op in _IDENTITY.values(), operand)
        for op, operand in zip(ops, operands[1:], strict=True)
    ]

    def compare(record: Mapping[str, Any]) -> bool:
        left = operands[0](record)
        for op, identity, operand in steps:
            right = operand(record)
            if identity:
                if not op(left, right):
                    return False
                left = right
                continue
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
    _check_cost(op, left, right)
    try:
        result = op(left, right)
    except (TypeError, ZeroDivisionError, OverflowError):
        return None
    except ValueError as exc:  # a %-format that the value cannot fill
        raise BadValue(f"{_short(left)} % {_short(right)}: {exc}") from None
    if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
        raise ExpressionLimit(f"an integer result over {MAX_INT_BITS} bits")
    return result


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else "<int>"
    return text if len(text) <= 40 else text[:37] + "..."


def _sequence(value: Any) -> bool:
    return isinstance(value, (str, tuple, list))


def _check_cost(op: Callable[[Any, Any], Any], left: Any, right: Any) -> None:
    """Raises `ExpressionLimit` before an operation that would build an oversize value."""
    if op is operator.mul:
        for items, times in ((left, right), (right, left)):
            repeated = _sequence(items) and isinstance(times, int)
            if repeated and len(items) * times > MAX_RESULT_ITEMS:
                raise ExpressionLimit(
                    f"{_short(items)} * {_short(times)}: a result of over {MAX_RESULT_ITEMS} items"
                )
    elif op is operator.add:
        if _sequence(left) and _sequence(right) and len(left) + len(right) > MAX_RESULT_ITEMS:
            raise ExpressionLimit(f"a concatenation of over {MAX_RESULT_ITEMS} items")
    elif op is operator.mod and isinstance(left, str):
        _check_format(left, right)


def _check_format(template: str, arguments: Any) -> None:
    """Bounds a ``%``-format: widths and precisions, and the size of what it may write."""
    count = template.count("%")
    if count == 0:
        return
    for match in _FORMAT_SPEC.finditer(template):
        width, precision, _ = match.groups()
        if "*" in (width, precision):
            raise ExpressionLimit(f"{_short(template)}: a %-format width taken from the values")
        for number in (width, precision):
            if number and (len(number) > 6 or int(number) > MAX_FORMAT_WIDTH):
                raise ExpressionLimit(
                    f"{_short(template)}: a %-format width or precision over {MAX_FORMAT_WIDTH}"
                )
    values = arguments if isinstance(arguments, tuple) else (arguments,)
    size = len(template) + count * MAX_FORMAT_WIDTH
    size += sum(len(v) if isinstance(v, (str, tuple, list)) else 0 for v in values)
    if size > MAX_RESULT_ITEMS:
        raise ExpressionLimit(f"{_short(template)}: a %-format result of over {MAX_RESULT_ITEMS}")
