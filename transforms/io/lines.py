"""Lines of a binary stream, read in chunks, with lines over a size limit never held whole.

`read_lines` yields each line (without its line feed, nor a carriage return before it) as
bytes. A line longer than the limit is skipped while it is read: only its first `PREFIX_BYTES`
are kept, with its full size and a running SHA-256, and it comes out as that prefix and an
`Oversize`. Memory is bounded by the chunk size and the limit, whatever the length of a line.
A UTF-8 byte order mark at the start of the stream (as some editors and exporters write) is
not part of the first line.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator

from transforms.io.decompress import Reader
from transforms.message import Oversize

__all__ = ["CHUNK_BYTES", "PREFIX_BYTES", "read_lines"]

CHUNK_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"
PREFIX_BYTES = 64 * 1024
"""How much of an oversize line is kept (and carried by its dead-letter record)."""


class _Skipped:
    """An oversize line being read: its prefix, size so far and running hash.

    A carriage return at the end of what was added is held back until more follows, so that
    a line ending in CR LF is measured and hashed without the CR, as a line kept whole is.
    """

    def __init__(self, start: bytes) -> None:
        self.prefix = b""
        self.size = 0
        self.hash = hashlib.sha256()
        self.held = b""
        self.add(start)

    def add(self, data: bytes) -> None:
        data = self.held + data
        self.held = b"\r" if data.endswith(b"\r") else b""
        if self.held:
            data = data[:-1]
        if len(self.prefix) < PREFIX_BYTES:
            self.prefix += data[: PREFIX_BYTES - len(self.prefix)]
        self.size += len(data)
        self.hash.update(data)

    def result(self) -> tuple[bytes, Oversize]:
        return self.prefix, Oversize(self.size, self.hash.hexdigest())


def _line(data: bytes, max_bytes: int) -> tuple[bytes, Oversize | None]:
    if data.endswith(b"\r"):
        if len(data) > max_bytes + 1:
            return _Skipped(data).result()  # it drops the "\r"
        return data[:-1], None
    if len(data) > max_bytes:
        return _Skipped(data).result()
    return data, None


def read_lines(
    stream: Reader, max_bytes: int, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[tuple[bytes, Oversize | None]]:
    """Yields ``(line, None)`` for each line, or ``(prefix, Oversize)`` for one over the limit.

    Args:
        stream: a binary stream with ``read(size)`` (a file, or a decompressing reader).
        max_bytes: the longest line (without its line ending) yielded whole.
        chunk_bytes: how much is read at a time.

    """
    pending: list[bytes] = []  # the start of the current line, at most max_bytes + 1 bytes
    size = 0
    skipped: _Skipped | None = None  # the current line, once it went over the limit
    first = stream.read(max(chunk_bytes, len(_BOM)))
    chunks = itertools.chain(
        [first.removeprefix(_BOM)], iter(lambda: stream.read(chunk_bytes), b"")
    )
    for chunk in chunks:
        parts = chunk.split(b"\n")
        last = parts.pop()
        if parts:
            if skipped is not None:
                skipped.add(parts[0])
                yield skipped.result()
                skipped = None
            else:
                yield _line(b"".join([*pending, parts[0]]), max_bytes)
            pending, size = [], 0
            for part in itertools.islice(parts, 1, None):
                yield _line(part, max_bytes)
        if skipped is not None:
            skipped.add(last)
            continue
        pending.append(last)
        size += len(last)
        # One more byte than the limit may still be a "\r" before the "\n".
        if size > max_bytes + 1:
            skipped, pending, size = _Skipped(b"".join(pending)), [], 0
    if skipped is not None:
        yield skipped.result()
    elif size:
        yield _line(b"".join(pending), max_bytes)
