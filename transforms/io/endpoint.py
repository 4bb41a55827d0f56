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
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
# A URI's authority ends at the path, query or fragment (as urlsplit reads it), at the end of the
# line or at the next URI. Whitespace does not end it: a password may hold a space.
_AUTHORITY_END = re.compile(r"[/?#\r\n]")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_NAME_TAIL = re.compile(r"[\w.-]*")
# After name=: the value quoted, or bare up to a delimiter; the words after a bare value up to a
# delimiter belong to it (a password with spaces, not URL-encoded); at the end of a line not.
_VALUE = re.compile(
    r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|"""
    r"""[^&#\s'",;)\]}]*(?:(?:\s+[^&#\s'",;)\]}=]+)+(?=[&#'",;)\]}]))?"""
)
# After "name" in JSON (or 'name' in a Python repr): the colon and the quoted value.
_JSON_VALUE = re.compile(r"""\s*:\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")
# Every name `is_secret` accepts holds one of these: the passes look only around them.
_SECRET_HINTS = ("pass", "pwd", "secret", "token", "credential", "key")
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


def _redact_authorities(text: str) -> str:
    """Masks the password, or the lone user name (often a token), of every URI in ``text``."""
    parts, done = [], 0
    found = text.find("://")
    while found != -1:
        start = found + 3
        stop = _AUTHORITY_END.search(text, start)
        end = stop.start() if stop else len(text)
        following = text.find("://", start, end)
        if following != -1:  # the next URI starts with its scheme
            end = following
            while end > start and text[end - 1] in _SCHEME_CHARS:
                end -= 1
        at = text.rfind("@", start, end)
        if at != -1:
            colon = text.find(":", start, at)
            parts += [text[done:start], text[start : colon + 1] if colon != -1 else "", MASK]
            done = at
        found = text.find("://", max(end, start))
    return "".join(parts) + text[done:] if parts else text


def _mask_named_values(text: str) -> str:
    """Masks the value of every ``name=value`` and ``"name": "value"`` whose name is secret."""
    lowered = text.lower()
    spans: dict[int, int] = {}  # where a value starts -> where it ends
    for hint in _SECRET_HINTS:
        found = lowered.find(hint)
        while found != -1:
            start = found
            while start > 0 and text[start - 1] in _NAME_CHARS:
                start -= 1
            tail = _NAME_TAIL.match(text, found)
            end = tail.end() if tail else found
            found = lowered.find(hint, end)
            if not is_secret(text[start:end]):
                continue
            quote = text[start - 1 : start] if start else ""
            if text.startswith("=", end):
                value = _VALUE.match(text, end + 1)
            elif quote in ("'", '"') and text.startswith(quote, end):
                value = _JSON_VALUE.match(text, end + 1)
            else:
                continue
            if value is not None and value.end() > value.start(value.lastindex or 0):
                spans[value.start(value.lastindex or 0)] = value.end()
    parts, done = [], 0
    for start, end in sorted(spans.items()):
        if start < done:
            continue
        quoted = text[start] in ("'", '"')
        parts += [
            text[done:start],
            text[start] if quoted else "",
            MASK,
            text[end - 1] if quoted else "",
        ]
        done = end
    return "".join(parts) + text[done:] if parts else text


def redact(text: str) -> str:
    """Returns ``text`` with the secrets it may hold replaced by ``***``.

    Masks the password (or the lone user name, often a token) of every URI, and the value of
    every ``name=value`` (query parameter, ``--option=value``) and JSON ``"name": "value"``
    whose name `is_secret`, quoted or not, URL-encoded or not.
    """
    if "@" in text and "://" in text:
        text = _redact_authorities(text)
    return _mask_named_values(text)


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
