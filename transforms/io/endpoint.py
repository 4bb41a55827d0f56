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

__all__ = ["Endpoint", "EndpointError", "boolean", "redact"]

T = TypeVar("T")

_SECRET_WORDS = r"password|passwd|pwd|token|secret|api_?key|access_?key|credential"
_SECRET_PARAMS = re.compile(rf"(?i)({_SECRET_WORDS})")
# The password runs to the last "@" before the path, as in urlsplit.
_USERINFO = re.compile(r"(?i)(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^/\s]*)@")
_QUERY_SECRET = re.compile(rf"(?i)(?P<key>[?&]\w*(?:{_SECRET_WORDS})\w*=)[^&#\s]*")


def redact(text: str) -> str:
    """Replaces passwords and tokens in any URIs inside ``text`` with ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}***", text)


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
            shown = "***" if _SECRET_PARAMS.search(name) else repr(text)
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
