r"""Redis commands packed by hand into one buffer per batch, and their replies read back.

redis-py packs each argument of each command in Python (an encoder call, a length, two joins),
which costs more than the write itself when a record has a dozen fields. Here a command is
packed once, as it is built, from arguments that are already RESP bulk strings (field names
come from a cache), and a batch is the concatenation of its commands, sent with one
``sendall`` over a redis-py connection (which connects, authenticates and selects the
database); the replies are parsed here, in one pass over what the socket returns.

A packed command looks like ``*3\r\n$4\r\nHSET\r\n$1\r\nk\r\n...``: an array header, then
each argument as ``$LENGTH\r\nBYTES\r\n``.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import redis
from redis._parsers import BaseParser

__all__ = ["bulk", "bulk_name", "fields", "packed", "read_replies", "send"]

NAME_CACHE = 4096  # distinct field names whose bulk strings are kept
RECEIVE_BYTES = 65536
# The first byte of each RESP2 reply type.
SIMPLE, ERROR, INTEGER, BULK, ARRAY = b"+-:$*"


def bulk(text: str | bytes) -> bytes:
    r"""Returns ``text`` as a RESP bulk string: ``"hé"`` gives ``b"$3\r\nh\xc3\xa9\r\n"``."""
    data = text.encode() if isinstance(text, str) else text
    return b"$%d\r\n%b\r\n" % (len(data), data)


@functools.lru_cache(maxsize=NAME_CACHE)
def bulk_name(name: str) -> bytes:
    """`bulk` of a field or command name, cached: records repeat the same names."""
    return bulk(name)


def packed(args: Sequence[bytes], pairs: Sequence[bytes] = (), tail: Sequence[bytes] = ()) -> bytes:
    """Returns the command of the bulk strings ``args``, then ``pairs``, then ``tail``.

    Each item of ``pairs`` is two bulk strings (a field's name and value, see `fields`).
    """
    count = len(args) + 2 * len(pairs) + len(tail)
    return b"*%d\r\n%b%b%b" % (count, b"".join(args), b"".join(pairs), b"".join(tail))


def fields(data: Mapping[str, Any], text: Callable[[Any], str]) -> tuple[list[bytes], list[bytes]]:
    r"""Returns a record's non-null fields as pairs, and the names of its null fields.

    Each pair is one piece holding two bulk strings, the field's name and ``text(value)``
    (a `packed` pair); a name is one bulk string. ``{"a": 1, "b": None}`` gives
    ``[b"$1\r\na\r\n$1\r\n1\r\n"]`` and ``[b"$1\r\nb\r\n"]``.
    """
    pairs: list[bytes] = []
    removed: list[bytes] = []
    for name, value in data.items():  # the hot loop of a sink: one format per field
        if value is None:
            removed.append(bulk_name(name))
        else:
            encoded = (value if type(value) is str else text(value)).encode()
            pairs.append(b"%b$%d\r\n%b\r\n" % (bulk_name(name), len(encoded), encoded))
    return pairs, removed


def send(connection: redis.Connection, commands: Iterable[bytes]) -> None:
    """Sends packed commands in one write; a failure disconnects (redis-py's rule)."""
    connection.send_packed_command([b"".join(commands)], check_health=False)


def read_replies(connection: redis.Connection, counts: Iterable[int]) -> list[Any]:
    """Reads the replies of commands sent together, grouped: ``counts`` replies per group.

    A group is one record's write: one command, or, when a group has more than one reply,
    ``MULTI``, the commands, ``EXEC``. The connection must speak RESP2 (``protocol=2``) and
    have nothing buffered, as redis-py's pool hands it out. The replies are parsed here, from
    the socket, in one pass over what arrived: redis-py's parser costs a few microseconds per
    reply, more than the write itself. When all of a transaction's commands were queued, its
    ``+OK`` and ``+QUEUED`` replies are skipped with one comparison.

    Returns:
        Per group, the first error among its replies (a refused command, or an error inside
        the ``EXEC`` array), as a `redis.ResponseError`, or else the group's last reply.

    Raises:
        redis.RedisError: the connection failed (lost, timed out, ``LOADING``, a reply that
            is not RESP): the caller must disconnect, since replies may be left unread.

    """
    sock = connection._sock  # redis-py has no public way to read many replies in one pass
    if sock is None:
        raise redis.ConnectionError("the connection closed before its replies came")
    buffer, position = b"", 0
    results: list[Any] = []
    for count in counts:
        error = None
        reply: Any = None
        if count > 1 and buffer.startswith(_queued(count), position):
            position += len(_queued(count))  # every command queued: only EXEC's reply is left
            count = 1
        for _ in range(count):
            while True:
                try:
                    reply, position = _reply(buffer, position)
                    break
                except _Incomplete:
                    buffer, position = buffer[position:] + _receive(sock), 0
            if isinstance(reply, list):  # EXEC: the errors of the queued commands are inside
                reply = next(
                    (item for item in reply if isinstance(item, redis.ResponseError)), reply
                )
            if error is None and isinstance(reply, redis.ResponseError):
                error = reply
        results.append(reply if error is None else error)
    if position != len(buffer):
        raise redis.InvalidResponse(f"{len(buffer) - position} bytes came after the last reply")
    return results


@functools.cache
def _queued(count: int) -> bytes:
    """The replies to ``MULTI`` and its commands in a group of ``count`` when all queued."""
    return b"+OK\r\n" + b"+QUEUED\r\n" * (count - 2)


class _Incomplete(Exception):
    """The reply goes on past the bytes received so far."""


def _receive(sock: socket.socket) -> bytes:
    """Returns the next bytes from the server, with redis-py's errors for its failures."""
    try:
        chunk = sock.recv(RECEIVE_BYTES)
    except TimeoutError:
        raise redis.TimeoutError("Timeout reading from the socket") from None
    except OSError as error:
        raise redis.ConnectionError(f"Error while reading from the socket: {error}") from None
    if not chunk:
        raise redis.ConnectionError("Connection closed by server.")
    return chunk


def _reply(buffer: bytes, start: int) -> tuple[Any, int]:
    """Parses the RESP2 reply at ``start``; returns it and where the next one starts.

    ``:3`` gives 3, ``+OK`` and ``$2 ab`` give bytes, ``$-1`` gives None, ``*2 ...`` a list,
    and ``-ERR ...`` the `redis.ResponseError` that redis-py makes of it.

    Raises:
        _Incomplete: the reply is not all in ``buffer`` yet.
        redis.ConnectionError: an error reply that redis-py raises at once (``LOADING``...).
        redis.InvalidResponse: not a RESP2 reply.

    """
    end = buffer.find(b"\r\n", start)
    if end < 0:
        raise _Incomplete
    kind, line, after = buffer[start], buffer[start + 1 : end], end + 2
    if kind == INTEGER:
        return int(line), after
    if kind == SIMPLE:
        return line, after
    if kind == ERROR:
        error = BaseParser.parse_error(line.decode("utf-8", errors="replace"))
        if isinstance(error, redis.ConnectionError):
            raise error
        return error, after
    if kind == BULK:
        size = int(line)
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            raise _Incomplete
        return buffer[after : after + size], after + size + 2
    if kind == ARRAY:
        size = int(line)
        if size < 0:
            return None, after
        items = []
        for _ in range(size):
            item, after = _reply(buffer, after)
            items.append(item)
        return items, after
    raise redis.InvalidResponse(f"Protocol Error: {buffer[start:end]!r}")
