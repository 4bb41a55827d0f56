"""Endpoint URIs: parsing, typed query parameters, and redaction of credentials.

``scheme://[user[:password]@]host[:port]/path?key=value`` names every source and sink. A
password never leaves this module unredacted except through `Endpoint.password`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["Endpoint", "EndpointError", "boolean", "is_secret", "redact", "redact_option"]

T = TypeVar("T")

# Words that make a parameter, option or field name secret (compared on the name's words).
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "passphrase", "secret", "token", "credential", "credentials"}
)
_SECRET_ENDINGS = ("password", "token", "secret")  # one-word names: PGPASSWORD, authtoken
# ... and single words that name a key (api_key, apiKey, access_key, private_key...).
_KEY_WORDS = frozenset({"api", "access", "secret", "private", "auth", "signing", "client"})
# A name of a reference to a secret, not a secret: password_env=VAR, password_secret=projects/...
_REFERENCE_SUFFIXES = frozenset({"env", "secret"})
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]*://"
# A URI's authority: up to the path, query or fragment (as urlsplit reads it), the end of the
# line or the next URI. Whitespace does not end it: a password may hold a space.
_AUTHORITY = re.compile(rf"(?P<scheme>{_SCHEME})(?P<netloc>(?:(?!{_SCHEME})[^/?#\r\n])*)")
# name=value (query parameters, --option=value, KEY=value): the name, then the value quoted or
# bare; a bare value runs to a delimiter, and the words after it up to a delimiter belong to it
# (a password with spaces, not URL-encoded); at the end of a line they do not.
_NAME_IS = re.compile(r"(?<![\w.])(?P<name>[A-Za-z_][\w.-]*)=")
_VALUE = re.compile(
    r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|"""
    r"""[^&#\s'",;)\]}]*(?:(?:\s+[^&#\s'",;)\]}=]+)+(?=[&#'",;)\]}]))?"""
)
# "name": "value" in JSON, 'name': 'value' in a Python repr.
_JSON_PAIR = re.compile(
    r"""(?P<name>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')(?P<sep>\s*:\s*)"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
)
MASK = "***"


def is_secret(name: str) -> bool:
    """Whether a parameter, option or field called ``name`` holds a secret.

    The one rule for every place a name meets a value: ``password``, ``sasl.password``,
    ``--redis_password``, ``apiKey``, ``access_key``, ``client_secret``, ``AUTH_TOKEN`` are
    secrets; ``key``, ``key_field``, ``password_env`` and ``password_secret`` (which name where
    a secret is read, not the secret) are not.
    """
    words = [word.lower() for word in _WORDS.findall(name)]
    if len(words) > 1 and words[-1] in _REFERENCE_SUFFIXES and is_secret("_".join(words[:-1])):
        return False
    if any(word in _SECRET_WORDS or word.endswith(_SECRET_ENDINGS) for word in words):
        return True
    joined = "".join(words)
    return any(f"{word}key" in joined for word in _KEY_WORDS)


def _redact_authority(match: re.Match[str]) -> str:
    netloc = match["netloc"]
    userinfo, at, host = netloc.rpartition("@")
    if not at:
        return match[0]
    user, colon, _ = userinfo.partition(":")
    # A user without a password is often a token (redis://TOKEN@host): masked as well.
    return f"{match['scheme']}{user + ':' if colon else ''}{MASK}@{host}"


def _mask_value(match: re.Match[str]) -> str:
    name = match["name"].strip("'\"")
    if not is_secret(name):
        return match[0]
    value = match["value"]
    quote = value[:1] if value[:1] in ("'", '"') else ""
    return f"{match['name']}{match['sep']}{quote}{MASK}{quote}"


def _mask_assignments(text: str) -> str:
    parts, done = [], 0
    for match in _NAME_IS.finditer(text):
        if match.start() < done or not is_secret(match["name"]):
            continue
        value = _VALUE.match(text, match.end())
        assert value is not None  # the bare form matches the empty string
        quote = value[0][:1] if value[0][:1] in ("'", '"') else ""
        parts += [text[done : match.end()], quote, MASK, quote]
        done = value.end()
    return "".join(parts) + text[done:] if parts else text


def redact(text: str) -> str:
    """Returns ``text`` with the secrets it may hold replaced by ``***``.

    Masks the password (or the lone user name, often a token) of every URI, and the value of
    every ``name=value`` (query parameter, ``--option=value``) and JSON ``"name": "value"``
    whose name `is_secret`, quoted or not, URL-encoded or not.
    """
    if "@" in text:
        text = _AUTHORITY.sub(_redact_authority, text)
    if "=" in text:
        text = _mask_assignments(text)
    if ":" in text:
        text = _JSON_PAIR.sub(_mask_value, text)
    return text


def redact_option(name: str, value: str) -> str:
    """Returns an option's value as it may be shown: masked whole if ``name`` is a secret."""
    return MASK if is_secret(name) else redact(value)


def boolean(text: str) -> bool:
    """Reads ``true``/``false`` (also ``1``/``0``, ``yes``/``no``); raises `ValueError`."""
    lowered = text.strip().lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(text)
    return lowered in ("true", "1", "yes")


class EndpointError(ValueError):
    """An endpoint URI that cannot be used; the message says what to change."""


@dataclass(frozen=True)
class Endpoint:
    """A parsed endpoint URI.

    Attributes:
        scheme: ``file``, ``pubsub``, ``bigquery``...
        host: the host name, lower-cased, without credentials and port (``""`` when absent).
        port: the port, when the part after the host's ``:`` is a number.
        authority: the network location without credentials, case kept and the port included
            (``my-project:dataset.Table`` for BigQuery).
        path: the path, percent-decoded.
        params: the query parameters (each given once).
        username: the user name of the URI, if any.
        password: the password of the URI, if any: never print it.

    """

    scheme: str
    host: str
    port: int | None
    authority: str
    path: str
    params: Mapping[str, str]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    raw: str = field(default="", repr=False)

    @classmethod
    def parse(cls, uri: str) -> Endpoint:
        """Parses ``uri``; raises `EndpointError` naming what is wrong."""
        if "://" not in uri:
            raise EndpointError(f"{redact(uri)!r} is not an endpoint URI: expected scheme://...")
        parts = urlsplit(uri)
        if not re.fullmatch(r"[a-z][a-z0-9+.-]*", parts.scheme or ""):
            raise EndpointError(f"{redact(uri)!r}: the scheme must be lower-case letters")
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        names = [name for name, _ in pairs]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise EndpointError(f"{redact(uri)!r}: parameters given more than once: {repeated}")
        try:
            port = parts.port
        except ValueError:
            port = None  # not a port: e.g. the ":DATASET.TABLE" of bigquery://PROJECT:DATASET.TABLE
        return cls(
            scheme=parts.scheme,
            host=parts.hostname or "",
            port=port,
            authority=parts.netloc.rpartition("@")[2],
            path=unquote(parts.path),
            params=dict(pairs),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            raw=uri,
        )

    def __str__(self) -> str:
        return redact(self.raw)

    def __repr__(self) -> str:
        return f"Endpoint({str(self)!r})"

    def check_params(self, allowed: set[str] | frozenset[str]) -> None:
        """Raises `EndpointError` if the URI has query parameters outside ``allowed``."""
        unknown = sorted(set(self.params) - set(allowed))
        if unknown:
            known = ", ".join(sorted(allowed)) or "none"
            raise EndpointError(f"{self}: unknown parameters {unknown}; known: {known}")

    def param(self, name: str, convert: Callable[[str], T], default: T) -> T:
        """Returns parameter ``name`` converted (``int``, ``float``...), or ``default``."""
        if name not in self.params:
            return default
        text = self.params[name]
        try:
            return convert(text)
        except (TypeError, ValueError):
            kind = getattr(convert, "__name__", "value")
            shown = MASK if is_secret(name) else repr(text)
            raise EndpointError(f"{self}: parameter {name}={shown} is not a valid {kind}") from None

    def flag(self, name: str, default: bool) -> bool:
        """Returns parameter ``name`` read as ``true`` or ``false`` (or ``1``/``0``, yes/no)."""
        return self.param(name, boolean, default)

    def fraction(self, name: str, default: float) -> float:
        """Returns parameter ``name`` as a number in [0, 1]."""
        value = self.param(name, float, default)
        if not 0.0 <= value <= 1.0:
            raise EndpointError(f"{self}: parameter {name} must be between 0 and 1, got {value}")
        return value

    def positive(self, name: str, convert: Callable[[str], Any], default: Any) -> Any:
        """Returns parameter ``name`` as a positive number (``None`` default allowed)."""
        value = self.param(name, convert, default)
        if value is not None and value <= 0:
            raise EndpointError(f"{self}: parameter {name} must be positive, got {value}")
        return value
