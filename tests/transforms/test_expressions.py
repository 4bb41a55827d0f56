"""Tests of transforms.expressions: the safe expression language over record fields."""

from __future__ import annotations

import pickle

import pytest

from transforms.expressions import Expression, ExpressionError

RECORD = {
    "a": 7,
    "b": 2,
    "f": 1.5,
    "s": "abc",
    "country": "DE",
    "flag": True,
    "zero": 0,
    "user": {"age": 30, "address": {"city": "Berlin"}, "name": None},
    "tags": ["x", "y"],
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # arithmetic
        ("a + b", 9),
        ("a - b", 5),
        ("a * b", 14),
        ("a / b", 3.5),
        ("a // b", 3),
        ("a % b", 1),
        ("-a", -7),
        ("-f", -1.5),
        ("f * 2", 3.0),
        ("s + 'd'", "abcd"),
        # comparisons
        ("a == 7", True),
        ("a == 8", False),
        ("a != 7", False),
        ("a != 8", True),
        ("a < 8", True),
        ("a < 7", False),
        ("a <= 7", True),
        ("a <= 6", False),
        ("a > 6", True),
        ("a > 7", False),
        ("a >= 7", True),
        ("a >= 8", False),
        ("1 < a < 10", True),
        ("1 < a < 5", False),
        ("s == 'abc'", True),
        ('s == "abd"', False),
        # in / not in, tuples and lists
        ("country in ('DE', 'FR')", True),
        ("country in ['DE', 'FR']", True),
        ("country in ('US', 'FR')", False),
        ("country not in ('US', 'FR')", True),
        ("country not in ['DE']", False),
        ("a in (1, 7, 9)", True),
        ("'b' in s", True),
        ("'x' in tags", True),
        ("'z' not in tags", True),
        # boolean logic
        ("a > 1 and b > 1", True),
        ("a > 1 and b > 5", False),
        ("a > 10 or b > 1", True),
        ("a > 10 or b > 5", False),
        ("not a > 10", True),
        ("not (a > 1)", False),
        ("flag", True),
        ("not zero", True),
        # literals and constant names
        ("true", True),
        ("false", False),
        ("null", None),
        ("True", True),
        ("False", False),
        ("None", None),
        ("42", 42),
        ("-3", -3),
        ("'text'", "text"),
        ("flag == true", True),
        # nested fields
        ("user.age", 30),
        ("user.age >= 18", True),
        ("user.address.city == 'Berlin'", True),
        ("user.address.zip", None),
        ("user.name", None),
        ("s.length", None),  # attribute of a non-mapping value reads as missing
    ],
)
def test_operators(text: str, expected: object) -> None:
    value = Expression(text)(RECORD)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a + b * 2", 11),  # * before +
        ("(a + b) * 2", 18),
        ("a - b - 1", 4),  # left associative
        ("a // b * b + a % b", 7),
        ("-a + b", -5),
        ("a + b > 8 and b < 3", True),
        ("a > 100 or a > 1 and b > 100", False),  # and binds tighter than or
        ("(a > 100 or a > 1) and b > 1", True),
        ("not a > 100 and b > 1", True),  # not binds looser than comparison
        ("a * 1.2 > 8 or country in ('FR',)", True),
    ],
)
def test_precedence(text: str, expected: object) -> None:
    assert Expression(text)(RECORD) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A comparison involving a missing value is False, both ways.
        ("missing == 1", False),
        ("missing != 1", False),
        ("missing < 1", False),
        ("missing >= 1", False),
        ("missing == null", False),
        ("missing in (1, 2)", False),
        ("missing not in (1, 2)", False),
        ("1 < missing < 3", False),
        ("user.missing > 0", False),
        ("nope.deeper.still == 'x'", False),
        # Arithmetic with a missing value is None; so is a type error or division by zero.
        ("missing + 1", None),
        ("1 - missing", None),
        ("missing * 2", None),
        ("-missing", None),
        ("-s", None),
        ("s - 1", None),
        ("a / zero", None),
        ("a // zero", None),
        ("a % zero", None),
        ("missing", None),
        # Comparisons of incompatible types are False rather than an error.
        ("s > 1", False),
        ("a in 5", False),
        # Boolean logic treats None as false.
        ("missing and true", False),
        ("missing or true", True),
        ("not missing", True),
        ("missing + 1 > 0", False),
    ],
)
def test_missing_and_bad_values_never_raise(text: str, expected: object) -> None:
    value = Expression(text)(RECORD)
    assert value == expected
    assert type(value) is type(expected)


def test_empty_record_and_nested_non_mapping() -> None:
    assert Expression("user.age > 1")({}) is False
    assert Expression("user.age")({"user": "not a dict"}) is None
    assert Expression("user.age")({"user": None}) is None


@pytest.mark.parametrize(
    ("text", "what", "column"),
    [
        ("len(s)", "Call", 1),
        ("a + abs(b)", "Call", 5),
        ("s.upper()", "Call", 1),
        ("tags[0]", "Subscript", 1),
        ("a > 1 and tags[0] == 'x'", "Subscript", 11),
        ("lambda: 1", "Lambda", 1),
        ("a.b(1).c", "Attribute", 1),  # attribute of a call, not of a name
        ("'abc'.upper", "Attribute", 1),
        ("true.x", "Attribute", 1),  # attribute of a constant name
        ("[x for x in tags]", "ListComp", 1),
        ("{x for x in tags}", "SetComp", 1),
        ("(x for x in tags)", "GeneratorExp", 1),
        ("{k: 1 for k in tags}", "DictComp", 1),
        ("a if b else 1", "IfExp", 1),
        ("{'k': 1}", "Dict", 1),
        ("a in (b, 1)", "Name", 7),  # tuples hold literals only
        ("b'bytes'", "Constant", 1),
        ("1j", "Constant", 1),
        ("f'{a}'", "JoinedStr", 1),
        ("(a := 1)", "NamedExpr", 2),
    ],
)
def test_refused_constructs_name_the_column(text: str, what: str, column: int) -> None:
    with pytest.raises(ExpressionError) as info:
        Expression(text)
    message = str(info.value)
    assert what in message
    assert "not allowed" in message
    assert f"(column {column})" in message
    assert repr(text) in message


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("a ** 2", 1),
        ("a & 1", 1),
        ("a | 1", 1),
        ("a << 1", 1),
        ("1 + a @ b", 5),
        ("~a", 1),
        ("+a", 1),
    ],
)
def test_refused_operators(text: str, column: int) -> None:
    with pytest.raises(ExpressionError, match=rf"not allowed \(column {column}\)"):
        Expression(text)


@pytest.mark.parametrize("text", ["a >", "(a", "a ==== 1", "", "   ", "a b"])
def test_syntax_errors(text: str) -> None:
    with pytest.raises(ExpressionError, match=r"syntax error at column \d+"):
        Expression(text)


def test_expression_error_is_a_value_error() -> None:
    assert issubclass(ExpressionError, ValueError)


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("a + b > 1", {"a", "b"}),
        ("user.age >= 18 and user.name != 'x'", {"user"}),
        ("true and null == 1", set()),
        ("count", {"count"}),
        ("country in ('DE', 'FR') or not flag", {"country", "flag"}),
        ("1 < x < y", {"x", "y"}),
        ("-z", {"z"}),
    ],
)
def test_fields(text: str, fields: set[str]) -> None:
    assert Expression(text).fields == frozenset(fields)


def test_pickle_round_trip() -> None:
    original = Expression("user.age >= 18 and country in ('DE', 'FR') and a * 2 > b")
    copy = pickle.loads(pickle.dumps(original))
    assert copy.text == original.text
    assert copy.fields == original.fields == {"user", "a", "b", "country"}
    assert copy == original
    for record in (RECORD, {}, {"user": {"age": 10}, "country": "DE", "a": 5, "b": 1}):
        assert copy(record) == original(record)
    assert copy(RECORD) is True


def test_whitespace_is_stripped_and_text_kept() -> None:
    expression = Expression("  a + 1  ")
    assert expression(RECORD) == 8
    assert expression.text == "  a + 1  "
