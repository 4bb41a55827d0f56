"""``console://``: a live terminal table of the latest row per key, for demos and quick looks.

URI parameters:
    key: comma-separated fields that identify a row (e.g. ``endpoint,window_start``); a new
        row with the same key replaces the old one. Without it every row is a new line.
    rows: how many rows are shown (the newest by ``sort``); default 12.
    sort: the field rows are ordered by, newest first; default ``window_start``.
    columns: comma-separated fields shown, in order; default all.
    title: the table's title.

The table is drawn with rich and refreshed as rows arrive; `LiveTable.close_all` (called when a
run ends) prints it a last time. On a terminal-less run (CI, a pipe) only that final table is
printed. It lives in the process that runs the pipeline, so it is for the DirectRunner.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import apache_beam as beam
from rich.console import Console
from rich.live import Live
from rich.table import Table

from transforms.io.base import Sink, SinkContext
from transforms.io.endpoint import Endpoint
from transforms.message import Record
from transforms.metrics import Count

__all__ = ["ConsoleSink", "LiveTable"]


_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT(\d\d:\d\d:\d\d)(\.\d+)?Z")

PIPED_WIDTH = 240
"""The table's width when standard output is not a terminal: wide enough to cut no column."""


def _console() -> Console:
    """Rich's console on standard output; piped or redirected, `PIPED_WIDTH` columns wide."""
    console = Console()
    return console if console.is_terminal else Console(width=PIPED_WIDTH)


def _cell(value: Any) -> str:
    if isinstance(value, str) and (match := _ISO_TIME.fullmatch(value)):
        return match[1]  # the time of day (UTC) is what tells windows apart on screen
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


class LiveTable:
    """The latest rows by key, drawn as a rich table; one per title in a process.

    Args:
        title: the title, which also names the table in the process.
        key: the fields identifying a row (empty: every row is new).
        rows: how many rows are shown.
        sort: the field ordering the rows, newest first.
        columns: the fields shown (empty: every field).
    """

    _tables: ClassVar[dict[str, LiveTable]] = {}
    _tables_lock = threading.Lock()

    def __init__(
        self, title: str, key: tuple[str, ...], rows: int, sort: str, columns: tuple[str, ...]
    ) -> None:
        self.title = title
        self._key = key
        self._rows = rows
        self._sort = sort
        self._columns = columns
        self._latest: dict[Any, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._live: Live | None = None

    @classmethod
    def acquire(
        cls, title: str, key: tuple[str, ...], rows: int, sort: str, columns: tuple[str, ...]
    ) -> LiveTable:
        """Returns the process's table of that title, starting its display on first use."""
        with cls._tables_lock:
            table = cls._tables.get(title)
            if table is None:
                table = cls._tables[title] = cls(title, key, rows, sort, columns)
                table._live = Live(table.render(), console=_console(), refresh_per_second=4)
                table._live.start()
            return table

    @classmethod
    def close_all(cls) -> None:
        """Stops every display of the process, each printing its final table."""
        with cls._tables_lock:
            for table in cls._tables.values():
                if table._live is not None:
                    table._live.update(table.render())
                    table._live.stop()
            cls._tables.clear()

    def add(self, row: dict[str, Any]) -> None:
        """Adds or replaces a row and redraws."""
        with self._lock:
            key = tuple(row.get(name) for name in self._key) if self._key else len(self._latest)
            self._latest[key] = row
        if self._live is not None:
            self._live.update(self.render())

    def _order(self, row: dict[str, Any]) -> tuple[int, Any]:
        """Numbers by value, then text; missing values last (the order is newest first)."""
        value = row.get(self._sort)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (1, value)
        return (0, "") if value is None else (2, str(value))

    def render(self) -> Table:
        """Returns the table of the newest rows."""
        with self._lock:
            rows = sorted(self._latest.values(), key=self._order, reverse=True)[: self._rows]
        table = Table(title=self.title)
        columns = list(self._columns)
        if not columns:
            for row in rows:
                columns += [name for name in row if name not in columns]
        for name in columns:
            table.add_column(name, justify="right" if _numeric(rows, name) else "left")
        for row in rows:
            table.add_row(*(_cell(row.get(name)) for name in columns))
        return table


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _numeric(rows: list[dict[str, Any]], name: str) -> bool:
    return any(
        isinstance(r.get(name), (int, float)) and not isinstance(r.get(name), bool) for r in rows
    )


class _ShowFn(beam.DoFn):
    def __init__(self, *table_args: Any) -> None:
        self._args = table_args

    def setup(self) -> None:
        self._table = LiveTable.acquire(*self._args)

    def process(self, block: list[Record]) -> Iterator[None]:
        for record in block:
            self._table.add(record.data)
        return iter(())


class ConsoleSink(Sink):
    """Shows blocks of records as a live table; showing does not fail: no dead letters.

    It runs on the DirectRunner only (`transforms.io.runners`): the table is in the terminal.
    """

    def __init__(self, endpoint: Endpoint, context: SinkContext) -> None:
        super().__init__(endpoint, context)
        endpoint.check_params(frozenset({"key", "rows", "sort", "title", "columns"}))
        self.key = _names(endpoint.params.get("key", ""))
        self.columns = _names(endpoint.params.get("columns", ""))
        self.rows: int = endpoint.positive("rows", int, 12)
        self.sort = endpoint.params.get("sort", "window_start")
        self.title = endpoint.params.get("title", context.pipeline)

    def expand(self, blocks: beam.PCollection) -> None:
        counted = blocks | "Count" >> Count(self.context.counter)
        show = _ShowFn(self.title, self.key, self.rows, self.sort, self.columns)
        _ = counted | "Show" >> beam.ParDo(show)
        return None
