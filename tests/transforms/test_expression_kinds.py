"""Tests of transforms.expression_kinds: comparisons that never hold are refused up front."""

from __future__ import annotations

import pytest

from transforms.expression_kinds import FieldKind, check_kinds
from transforms.expressions import Expression, ExpressionError

KINDS = {
    "count": FieldKind("number", "INTEGER"),
    "name": FieldKind("text", "STRING"),
    "ok": FieldKind("bool", "BOOLEAN"),
    "tags": FieldKind("list", "REPEATED STRING"),
    "source": FieldKind("object", "RECORD"),
    "source.line": FieldKind("number", "INTEGER"),
}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("count < 'a'", "count is INTEGER and 'a' is text: a comparison of number with text"),
        ("name == 2", "name is STRING and 2 is number"),
        ("ok == 1", "ok is BOOLEAN and 1 is number"),
        ("source.line >= '7'", "source.line is INTEGER and '7' is text"),
        ("count + 1 > 'x'", "count + 1 is number and 'x' is text"),
        ("-count < 'x'", "-count is number"),
        ("name * 2 == 3", "name * 2 is text and 3 is number"),
        ("count in ('a', 'b')", "count is INTEGER and 'a' is text"),
        ("count in name", "count is INTEGER and name is STRING"),
        ("name == 'x' and (1 < count < 'z')", "count is INTEGER and 'z' is text"),
        ("source == 1", "source is RECORD and 1 is number"),
        ("(count > 1) == 'yes'", "count > 1 is bool and 'yes' is text"),
    ],
)
def test_a_comparison_of_values_of_other_kinds_is_refused(text: str, message: str) -> None:
    Expression(text)  # it compiles: only its kinds are wrong
    with pytest.raises(ExpressionError, match="never holds") as raised:
        check_kinds(text, KINDS)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    "text",
    [
        "count < 2 and name == 'x'",
        "count in (1, 'a')",  # one item of its kind is enough
        "count in (1, null)",
        "'x' in name",
        "name in tags",  # a list may hold anything
        "count is None or name is not None",
        "other < 'a'",  # a field of unknown kind may be anything
        "other.deep == 1",
        "count == null",
        "ok == true",
        "name % 2 == 'x'",
        "count * 1.5 > 2",
        "(count > 1) == false",
        "count + other > 'a'",  # unknown arithmetic
    ],
)
def test_comparisons_that_may_hold_are_kept(text: str) -> None:
    check_kinds(text, KINDS)
