"""What the Redis sink writes: one command per record, in the mode the URI names.

See `transforms.io.redis.sink` for the modes and how values are written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

from transforms.cdc.change import Change, sequence_key
from transforms.errors import SinkRejected
from transforms.io.redis.connection import RedisConnection
from transforms.io.redis.scripts import SCRIPTS, SHAS
from transforms.io.redis.text import KeyTemplate, to_json, to_text

__all__ = ["TruncateUnsupported"]

STATE_FIELDS = ("_sequence", "_deleted")  # the fields state mode adds to a row
Args: TypeAlias = tuple[str | bytes | int, ...]  # one command: its name, then its arguments


class TruncateUnsupported(SinkRejected):
    """A CDC truncate, which ``state`` mode cannot apply: Redis keys have no table scope."""

    reason = "cdc_truncate_unsupported"


def _score(data: Mapping[str, Any], name: str) -> str:
    """Returns the score field of a record as text; raises `SinkRejected` unless a number."""
    value = data.get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return to_text(value)
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            pass
        else:
            return value
    state = "missing" if name not in data else f"{value!r}, not a number"
    raise SinkRejected(f"score field {name!r} is {state}")


def _state_change(data: Mapping[str, Any]) -> Change:
    """Returns the change of a record for ``state`` mode, its key in canonical form.

    Raises:
        SinkRejected: ``data`` is not a valid change.
        TruncateUnsupported: the change is a truncate.

    """
    try:
        change = Change.from_dict(dict(data))
    except (KeyError, TypeError, ValueError) as error:
        raise SinkRejected(f"not a CDC change: {error!r}") from None
    if change.op == "truncate":
        raise TruncateUnsupported(
            f"a truncate of {change.table} cannot be applied to Redis state (no table scope)"
        )
    return change


def _fields(data: Mapping[str, Any]) -> tuple[list[bytes], list[bytes]]:
    """Returns a record's non-null fields as names and values, and the names of its null fields.

    ``{"a": 1, "b": None}`` gives ``[b"a", b"1"]`` and ``[b"b"]`` (values as `to_text` writes
    them). Text that is not UTF-8 raises `UnicodeEncodeError` here, for this record alone.
    """
    pairs: list[bytes] = []
    removed: list[bytes] = []
    for name, value in data.items():  # the hot loop of a sink: one conversion per field
        if value is None:
            removed.append(name.encode())
        else:
            pairs += (name.encode(), (value if type(value) is str else to_text(value)).encode())
    return pairs, removed


def _state_args(change: Change) -> tuple[str, ...]:
    """Returns the state script's op, sequence key and field/value pairs of a change.

    Raises:
        SinkRejected: its row has a field of `STATE_FIELDS`.

    """
    row = change.row or {}
    clashes = sorted(set(row) & set(STATE_FIELDS))
    if clashes:
        raise SinkRejected(f"the row has fields {clashes}, which state mode keeps for itself")
    pairs = [(name, to_text(value)) for name, value in row.items() if value is not None]
    return (change.op, sequence_key(change.sequence), *(text for pair in pairs for text in pair))


class Command(NamedTuple):
    """One record's write: its key (or channel) and its command."""

    key: str
    args: Args


@dataclass(frozen=True)
class WriteTarget:
    """Everything the write DoFn needs: the server, and what to write; picklable."""

    connection: RedisConnection
    mode: str
    key: KeyTemplate
    ttl: int | None
    score: str | None
    member: KeyTemplate | None
    maxlen: int | None
    delete_ttl: int | None
    batch_size: int
    pipeline: str
    counter: str

    @property
    def script(self) -> str | None:
        """The Lua script of the writes, or None when they are plain commands.

        A hash without ``ttl`` writes a record with both set and null fields with it.
        """
        if self.mode in ("state", "hash") or (self.ttl and self.mode in SCRIPTS):
            return SCRIPTS[self.mode]
        return None

    def command(self, data: Mapping[str, Any]) -> Command:
        """Builds the write of one record; raises `SinkRejected` when it cannot be built."""
        change = _state_change(data) if self.mode == "state" else None
        if change is not None:  # a state key reads only the table and the canonical key
            data = {"table": change.table, "key": change.key}
        key = self.key.render(data)
        mode, ttl, name = self.mode, self.ttl, key.encode()
        if mode in ("string", "publish"):
            text = to_json(data).encode()
            if mode == "publish":
                return Command(key, ("PUBLISH", name, text))
            expiry = ("EX", ttl) if ttl else ()
            return Command(key, ("SET", name, text, *expiry))
        if change is not None:
            args = [str(self.delete_ttl).encode(), *(a.encode() for a in _state_args(change))]
            return self._scripted(name, key, args)
        if mode == "zset":
            assert self.score is not None  # checked by RedisSink
            member = to_json(data) if self.member is None else self.member.render(data)
            args = [_score(data, self.score).encode(), member.encode()]
            if ttl:
                return self._scripted(name, key, args)
            return Command(key, ("ZADD", name, *args))
        pairs, removed = _fields(data)
        if mode == "stream":
            if not pairs:
                raise SinkRejected("the record has no non-null field to add to the stream")
            if ttl:
                return self._scripted(name, key, [str(self.maxlen or 0).encode()], pairs)
            trim = ("MAXLEN", "~", self.maxlen) if self.maxlen else ()
            return Command(key, ("XADD", name, *trim, "*", *pairs))
        if not data:
            raise SinkRejected("the record has no field to write to the hash")
        if ttl or (pairs and removed):
            return self._scripted(name, key, [str(len(pairs) // 2).encode()], pairs, removed)
        if not removed:
            return Command(key, ("HSET", name, *pairs))
        return Command(key, ("HDEL", name, *removed))

    def _scripted(
        self,
        name: bytes,
        key: str,
        args: list[bytes],
        pairs: Sequence[bytes] = (),
        tail: Sequence[bytes] = (),
    ) -> Command:
        """The script call of one write: ``EVALSHA sha 1 key ttl args... pairs... tail...``."""
        return Command(
            key, ("EVALSHA", SHAS[self.mode], 1, name, self.ttl or 0, *args, *pairs, *tail)
        )
