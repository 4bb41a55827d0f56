"""Tests of transforms.io.console: the live table of the latest row per key."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table

from transforms.io.base import SinkContext
from transforms.io.console import ConsoleSink, LiveTable
from transforms.io.endpoint import EndpointError
from transforms.io.registry import make_sink

ROOT = Path(__file__).resolve().parents[3]


def _cells(table: Table) -> list[list[str]]:
    """The table's rows as lists of cell texts."""
    columns = [list(map(str, column.cells)) for column in table.columns]
    return [list(row) for row in zip(*columns, strict=True)] if columns else []


def _text(table: Table) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(table)
    return out.getvalue()


def _row(endpoint: str, minute: int, requests: Any, **extra: Any) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "window_start": f"2026-11-25T10:{minute:02d}:00Z",
        "requests": requests,
        **extra,
    }


# ----------------------------------------------------------------- LiveTable


def test_rows_with_the_same_key_replace_each_other() -> None:
    table = LiveTable("t", ("endpoint", "window_start"), rows=10, sort="window_start", columns=())
    table.add(_row("/a", 0, 1))
    table.add(_row("/b", 0, 2))
    table.add(_row("/a", 0, 111))
    table.add(_row("/a", 1, 5))
    rendered = table.render()
    assert isinstance(rendered, Table)
    assert rendered.title == "t"
    assert [c.header for c in rendered.columns] == ["endpoint", "window_start", "requests"]
    assert sorted(_cells(rendered)) == [
        ["/a", "10:00:00", "111"],
        ["/a", "10:01:00", "5"],
        ["/b", "10:00:00", "2"],
    ]
    assert "│ 1 " not in _text(rendered)


def test_rows_without_key_are_appended() -> None:
    table = LiveTable("log", (), rows=10, sort="window_start", columns=())
    for requests in (1, 1, 2):
        table.add(_row("/a", 0, requests))
    assert _cells(table.render()) == [["/a", "10:00:00", c] for c in ("1", "1", "2")]


def test_render_shows_the_newest_rows_sorted_descending() -> None:
    table = LiveTable("t", ("endpoint", "window_start"), rows=3, sort="window_start", columns=())
    for minute in (4, 0, 2, 5, 1, 3):
        table.add(_row("/a", minute, minute))
    rendered = table.render()
    assert [row[1] for row in _cells(rendered)] == [
        "10:05:00",
        "10:04:00",
        "10:03:00",
    ]
    other = LiveTable("t2", ("endpoint",), rows=5, sort="endpoint", columns=())
    for endpoint in ("/b", "/d", "/a", "/c"):
        other.add(_row(endpoint, 0, 1))
    assert [row[0] for row in _cells(other.render())] == ["/d", "/c", "/b", "/a"]


def test_numeric_columns_are_right_justified_and_formatted() -> None:
    table = LiveTable("t", ("endpoint",), rows=5, sort="endpoint", columns=())
    table.add(_row("/a", 0, 12345, latency=1234.5, ok=True, note=None))
    table.add(_row("/b", 0, 7, latency=None, ok=False, note="x"))
    rendered = table.render()
    justify = {c.header: c.justify for c in rendered.columns}
    assert justify == {
        "endpoint": "left",
        "window_start": "left",
        "requests": "right",
        "latency": "right",
        "ok": "left",
        "note": "left",
    }
    assert _cells(rendered) == [
        ["/b", "10:00:00", "7", "", "False", "x"],
        ["/a", "10:00:00", "12,345", "1,234.50", "True", ""],
    ]
    text = _text(rendered)
    assert "12,345" in text and "1,234.50" in text


def test_empty_table_renders_with_its_title() -> None:
    rendered = LiveTable("nothing yet", ("k",), rows=5, sort="k", columns=()).render()
    assert rendered.title == "nothing yet"
    assert _cells(rendered) == []


def test_numeric_sort_field_orders_by_number() -> None:
    table = LiveTable("t", ("endpoint",), rows=2, sort="requests", columns=())
    for endpoint, requests in (("/a", 9), ("/b", 100), ("/c", 10)):
        table.add(_row(endpoint, 0, requests))
    assert [row[2] for row in _cells(table.render())] == ["100", "10"]


def test_chosen_columns_in_order() -> None:
    table = LiveTable("t", ("endpoint",), rows=5, sort="endpoint", columns=("requests", "gone"))
    table.add(_row("/a", 0, 3, extra="hidden"))
    rendered = table.render()
    assert [c.header for c in rendered.columns] == ["requests", "gone"]
    assert _cells(rendered) == [["3", ""]]


def test_one_display_per_title_printed_once_more_by_close_all(
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = LiveTable.acquire("shared title", ("endpoint",), 5, "endpoint", ())
    second = LiveTable.acquire("shared title", ("endpoint",), 5, "endpoint", ())
    try:
        assert second is first
        first.add(_row("/a", 0, 41))
        second.add(_row("/a", 0, 42))
        second.add(_row("/b", 0, 7))
    finally:
        LiveTable.close_all()
    out = capsys.readouterr().out
    assert "shared title" in out
    assert "42" in out and "41" not in out and "/b" in out
    again = LiveTable.acquire("shared title", ("endpoint",), 5, "endpoint", ())
    try:
        assert again is not first
    finally:
        LiveTable.close_all()


def test_a_piped_table_keeps_every_column_whole(capsys: pytest.CaptureFixture[str]) -> None:
    columns = ("endpoint", "window_start", "requests", "p95_latency_ms", "max_latency_ms",
               "users", "timing", "pane_index", "is_last")  # fmt: skip
    table = LiveTable.acquire("piped", ("endpoint",), 5, "endpoint", columns)
    try:
        table.add({name: f"value-of-{name}" for name in columns})
    finally:
        LiveTable.close_all()
    out = capsys.readouterr().out  # captured: not a terminal
    assert "…" not in out
    for name in columns:
        assert name in out and f"value-of-{name}" in out


# ----------------------------------------------------------------- the sink in a pipeline

_PIPELINE = textwrap.dedent(
    """
    import apache_beam as beam
    from transforms.blocks import Batch
    from transforms.io.base import SinkContext
    from transforms.io.console import LiveTable
    from transforms.io.registry import make_sink
    from transforms.message import Record
    from transforms.metrics import counter_totals

    def row(endpoint, minute, requests):
        return Record({"endpoint": endpoint, "window_start": f"2026-11-25T10:0{minute}:00Z",
                       "requests": requests})

    rows = [row("/a", 0, 1111), row("/b", 0, 2), row("/c", 1, 3), row("/a", 1, 4),
            row("/a", 0, 5555), row("/b", 0, 6666)]
    p = beam.Pipeline()
    _ = (p | beam.Create(rows) | Batch()
           | make_sink("console://?key=endpoint,window_start&rows=5&title=t", SinkContext("p")))
    result = p.run()
    result.wait_until_finish()
    print("BEFORE CLOSE", flush=True)
    LiveTable.close_all()  # as pipelines.framework.run does when a run ends
    print()
    print("COUNTERS", counter_totals(result.metrics()))
    """
)


def test_console_sink_prints_the_final_table_of_latest_rows() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", _PIPELINE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    before, _, out = completed.stdout.partition("BEFORE CLOSE\n")
    assert "│" not in before  # not a terminal: only the final table is printed
    lines = out.splitlines()
    assert lines[0].strip() == "t"
    header = [line for line in lines if line.startswith("┃")]
    assert [cell.strip() for cell in header[0].strip("┃").split("┃")] == [
        "endpoint",
        "window_start",
        "requests",
    ]
    body = [line for line in lines if line.startswith("│")]
    rows = [[cell.strip() for cell in line.strip("│").split("│")] for line in body]
    assert sorted(rows) == [
        ["/a", "10:00:00", "5,555"],
        ["/a", "10:01:00", "4"],
        ["/b", "10:00:00", "6,666"],
        ["/c", "10:01:00", "3"],
    ]
    assert [row[1] for row in rows] == sorted((row[1] for row in rows), reverse=True)
    assert "1,111" not in out and "│ 2 " not in out
    assert "COUNTERS {'written': 6}" in out


# ----------------------------------------------------------------- URIs


def test_uri_parameters() -> None:
    sink = make_sink("console://?key=endpoint,%20window_start&rows=3&sort=n&title=x", _CONTEXT)
    assert isinstance(sink, ConsoleSink)
    assert (sink.key, sink.rows, sink.sort, sink.title) == (
        ("endpoint", "window_start"),
        3,
        "n",
        "x",
    )
    default = make_sink("console://", _CONTEXT)
    assert (default.key, default.rows, default.sort, default.title) == ((), 12, "window_start", "p")


_CONTEXT = SinkContext("p")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("console://?colour=red", "unknown parameters ['colour']"),
        ("console://?rows=0", "rows must be positive"),
        ("console://?rows=-2", "rows must be positive"),
        ("console://?rows=many", "rows='many' is not a valid int"),
    ],
)
def test_uri_errors(uri: str, message: str) -> None:
    with pytest.raises(EndpointError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_sink(uri, _CONTEXT)
