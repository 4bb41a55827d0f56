"""Compressed input files, chosen by extension and read in bounded chunks.

The extensions are those of Beam's ``CompressionTypes``: ``.gz``, ``.bz2``, ``.zst`` and
``.zstd`` (Zstandard), ``.deflate`` (zlib), ``.xz`` and ``.lzma``. Every reader returns at most
the bytes asked for by each ``read(size)``, whatever the compression ratio, so a highly
compressible line never expands in memory at once; concatenated streams (``cat a.gz b.gz``) are
read through.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

import zstandard

__all__ = ["EXTENSIONS", "Reader", "decompressed"]


class Reader(Protocol):
    """What the line reader needs of a file: ``read(size)``, at most ``size`` bytes."""

    def read(self, size: int = -1, /) -> bytes: ...


class _Inflate(io.RawIOBase):
    """Reads a zlib (``.deflate``) stream with bounded output per read."""

    def __init__(self, raw: BinaryIO, read_size: int = 1 << 16) -> None:
        super().__init__()
        self._raw = raw
        self._read_size = read_size
        self._inflate = zlib.decompressobj()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        while not self._inflate.eof:
            data = self._inflate.unconsumed_tail or self._raw.read(self._read_size)
            out = self._inflate.decompress(data, len(view)) if data else self._inflate.flush()
            if out or not data:
                view[: len(out)] = out
                return len(out)
        return 0


def _zstd(raw: BinaryIO) -> Reader:
    return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)


EXTENSIONS: dict[str, Callable[[BinaryIO], Reader]] = {
    ".gz": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    ".bz2": bz2.BZ2File,
    ".zst": _zstd,
    ".zstd": _zstd,
    ".deflate": lambda raw: io.BufferedReader(_Inflate(raw)),
    ".xz": lzma.LZMAFile,
    ".lzma": lzma.LZMAFile,
}
"""Extension -> the reader of the decompressed bytes of a raw binary file."""


def decompressed(raw: BinaryIO, path: str) -> Reader:
    """Returns a reader of ``raw``'s decompressed bytes (``raw`` itself when uncompressed).

    The compression is chosen by the extension of ``path`` (`EXTENSIONS`).
    """
    for extension, reader in EXTENSIONS.items():
        if path.endswith(extension):
            return reader(raw)
    return raw
