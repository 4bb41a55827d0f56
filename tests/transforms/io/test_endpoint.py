"""Tests of transforms.io.endpoint: parsing, typed parameters and credential redaction."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.io.endpoint import Endpoint, EndpointError, redact


def test_parse_full_uri() -> None:
    ep = Endpoint.parse("kafka://alice:s3cret@broker.example:9092/topic%20a?group=g1&n=5")
    assert ep.scheme == "kafka"
    assert ep.host == "broker.example"
    assert ep.port == 9092
    assert ep.path == "/topic a"
    assert dict(ep.params) == {"group": "g1", "n": "5"}
    assert ep.username == "alice"
    assert ep.password == "s3cret"
    assert ep.raw == "kafka://alice:s3cret@broker.example:9092/topic%20a?group=g1&n=5"


def test_parse_minimal_uris() -> None:
    ep = Endpoint.parse("file:///data/in/*.jsonl")
    assert (ep.scheme, ep.host, ep.port, ep.path) == ("file", "", None, "/data/in/*.jsonl")
    assert dict(ep.params) == {}
    assert ep.username is None and ep.password is None
    ep = Endpoint.parse("generator://events?count=3&flag=")
    assert (ep.host, ep.path) == ("events", "")
    assert dict(ep.params) == {"count": "3", "flag": ""}


def test_percent_encoded_credentials_are_decoded() -> None:
    ep = Endpoint.parse("redis://us%40er:p%40ss%2Fw%3Ard@h:6379")
    assert ep.username == "us@er"
    assert ep.password == "p@ss/w:rd"
    assert "p@ss/w:rd" not in str(ep)
    assert "p%40ss%2Fw%3Ard" not in str(ep)


def test_user_without_password() -> None:
    ep = Endpoint.parse("kafka://alice@h:1/t")
    assert ep.username == "alice" and ep.password is None
    assert str(ep) == "kafka://***@h:1/t"  # a lone user name is often a token


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("no-scheme-here", "expected scheme://"),
        ("/just/a/path", "expected scheme://"),
        ("1abc://host", "scheme"),
        ("ka_fka://host", "scheme"),
        ("kafka://h/t?a=1&b=2&a=3", r"more than once: \['a'\]"),
        ("kafka://h/t?b=1&a=1&b=2&a=3", r"\['a', 'b'\]"),
    ],
)
def test_parse_errors(uri: str, needle: str) -> None:
    with pytest.raises(EndpointError, match=needle):
        Endpoint.parse(uri)


def test_authority_keeps_case_and_non_numeric_port() -> None:
    ep = Endpoint.parse("bigquery://my-Project:dataset.Table?x=1")
    assert ep.authority == "my-Project:dataset.Table"
    assert ep.host == "my-project"
    assert ep.port is None
    ep = Endpoint.parse("kafka://u:hunter2@Broker:9092/t")
    assert (ep.authority, ep.host, ep.port) == ("Broker:9092", "broker", 9092)
    assert "hunter2" not in repr(ep)
    assert Endpoint.parse("kafka://h:99999/t").port is None
    assert Endpoint.parse("file:///x").authority == ""


def test_endpoint_error_is_value_error() -> None:
    assert issubclass(EndpointError, ValueError)


def test_parse_errors_redact_the_password() -> None:
    with pytest.raises(EndpointError) as info:
        Endpoint.parse("kafka://u:hunter2@h/t?a=1&a=2")
    assert "hunter2" not in str(info.value)


def test_param_conversion() -> None:
    ep = Endpoint.parse("x://h?n=5&f=0.25&s=word")
    assert ep.param("n", int, 1) == 5
    assert ep.param("f", float, 0.0) == 0.25
    assert ep.param("s", str, "") == "word"
    assert ep.param("missing", int, 7) == 7
    assert ep.param("missing", int, None) is None


def test_param_conversion_errors_name_parameter_and_type() -> None:
    ep = Endpoint.parse("x://h?n=five&f=")
    with pytest.raises(EndpointError, match=r"n='five' is not a valid int"):
        ep.param("n", int, 1)
    with pytest.raises(EndpointError, match=r"f='' is not a valid float"):
        ep.param("f", float, 1.0)


def test_param_conversion_error_hides_secret_values() -> None:
    ep = Endpoint.parse("x://h?api_key=abc123&password=pw987")
    for name in ("api_key", "password"):
        with pytest.raises(EndpointError) as info:
            ep.param(name, int, 0)
        text = str(info.value)
        assert "abc123" not in text and "pw987" not in text and "***" in text


def test_fraction() -> None:
    ep = Endpoint.parse("x://h?a=0&b=1&c=0.5&d=1.5&e=-0.1")
    assert ep.fraction("a", 0.3) == 0.0
    assert ep.fraction("b", 0.3) == 1.0
    assert ep.fraction("c", 0.3) == 0.5
    assert ep.fraction("z", 0.3) == 0.3
    for name in ("d", "e"):
        with pytest.raises(EndpointError, match=f"{name} must be between 0 and 1"):
            ep.fraction(name, 0.0)


def test_positive() -> None:
    ep = Endpoint.parse("x://h?a=3&b=0&c=-2&d=2.5")
    assert ep.positive("a", int, None) == 3
    assert ep.positive("d", float, None) == 2.5
    assert ep.positive("z", int, None) is None
    for name in ("b", "c"):
        with pytest.raises(EndpointError, match=f"{name} must be positive"):
            ep.positive(name, int, None)


def test_check_params_lists_known() -> None:
    ep = Endpoint.parse("x://h?count=1&bogus=2&zzz=3")
    ep.check_params({"count", "bogus", "zzz", "other"})
    with pytest.raises(EndpointError) as info:
        ep.check_params(frozenset({"count", "rate", "seed"}))
    text = str(info.value)
    assert "['bogus', 'zzz']" in text
    assert "known: count, rate, seed" in text
    with pytest.raises(EndpointError, match="known: none"):
        ep.check_params(frozenset())


def test_check_params_message_hides_password() -> None:
    ep = Endpoint.parse("x://u:hunter2@h?bogus=1&token=tok999")
    with pytest.raises(EndpointError) as info:
        ep.check_params(frozenset())
    assert "hunter2" not in str(info.value)
    assert "tok999" not in str(info.value)


# --- redaction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kafka://alice:s3cret@h:1/t", "kafka://alice:***@h:1/t"),
        ("redis://:s3cret@h:6379", "redis://:***@h:6379"),
        ("x://h/p?password=s3cret&a=1", "x://h/p?password=***&a=1"),
        ("x://h/p?a=1&token=abc.def", "x://h/p?a=1&token=***"),
        ("x://h/p?a=1&TOKEN=abc", "x://h/p?a=1&TOKEN=***"),
        ("x://h/p?Password=abc", "x://h/p?Password=***"),
        ("x://h/p?secret=a&api_key=b&apikey=c", "x://h/p?secret=***&api_key=***&apikey=***"),
        ("x://h/p?passwd=a&access_key=b", "x://h/p?passwd=***&access_key=***"),
        ("no uri here", "no uri here"),
        ("x://h/p?a=1", "x://h/p?a=1"),
        (
            "from kafka://u:p1@h/t to redis://v:p2@g?token=t3 done",
            "from kafka://u:***@h/t to redis://v:***@g?token=*** done",
        ),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


@settings(max_examples=300, deadline=None)
@given(
    user=st.text(min_size=0, max_size=10),
    secret=st.text(min_size=0, max_size=20),
    token=st.text(min_size=0, max_size=20),
)
def test_str_never_contains_the_password(user: str, secret: str, token: str) -> None:
    # Markers keep the secrets distinct from the rest of the URI.
    password, token = "PW#" + secret, "TK#" + token
    uri = f"kafka://{quote(user, safe='')}:{quote(password, safe='')}@host:9092/t?token=" + quote(
        token, safe=""
    )
    ep = Endpoint.parse(uri)
    assert ep.password == password
    shown = str(ep)
    assert password not in shown
    assert quote(password, safe="") not in shown
    assert quote(token, safe="") not in shown
    assert password not in repr(ep)
    assert quote(password, safe="") not in repr(ep)


def test_repr_hides_query_secrets() -> None:
    ep = Endpoint.parse("x://h/p?token=tok999&password=pw999")
    assert "tok999" not in repr(ep)
    assert "pw999" not in repr(ep)


def test_upper_case_scheme_password_hidden() -> None:
    try:
        ep = Endpoint.parse("REDIS://user:hunter2@host:6379")
    except EndpointError:
        return  # refusing the URI would be fine too
    assert "hunter2" not in str(ep)


@pytest.mark.parametrize("key", ["access_token", "client_secret", "db_password"])
def test_prefixed_secret_params_hidden(key: str) -> None:
    assert "tok999" not in str(Endpoint.parse(f"https://h/p?{key}=tok999"))


def test_password_with_at_sign_fully_hidden() -> None:
    ep = Endpoint.parse("x://u:pa@ss99@host")
    assert ep.password == "pa@ss99"
    assert "ss99" not in str(ep)
