"""What a run shows while it works, on a terminal only: a progress bar or a live status line.

A bounded run shows a bar (rich's ``Progress``) on standard error: bytes of the input files
read (or records, out of a generator's ``count``), records per second, dead letters so far. A
live run shows a status line refreshed every second: records read, delivered (written or
aggregated) and dead-lettered, each with its rate per second, and the source's watermark.

Both are drawn only when standard error is a terminal and the pipeline runs in this process
(the DirectRunner), and not beside a ``console://`` sink, which draws its own table: piped or
in CI nothing is printed. The figures come from this process as it counts them
(`transforms.metrics.LOCAL`) for a bounded run, whose runner commits counters only at the end,
and from the runner's committed counters (`transforms.metrics.counter_totals`) for a live one.
One thread samples them and redraws, sleeping between samples.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from transforms.io.live import live_watermark
from transforms.metrics import BYTES_READ, DEAD_LETTERED, LOCAL, READ, counter_totals

__all__ = ["BAR_SECONDS", "STATUS_SECONDS", "Bar", "Status", "show_progress"]

BAR_SECONDS = 0.5
"""How often the bar of a bounded run is redrawn."""
STATUS_SECONDS = 1.0
"""How often the status line of a live run is redrawn."""
LOCAL_RUNNERS = (None, "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")
"""The runners that run the steps in this process (``None``: the default, the DirectRunner)."""


def _since(start: dict[str, int]) -> dict[str, int]:
    now = LOCAL.snapshot()
    return {name: value - start.get(name, 0) for name, value in now.items()}


class Bar:
    """The bar of a bounded run: ``Reading ━━━━━━  42% 12.1/28.7 MB 120,000 records ...``.

    Args:
        stream: where it is drawn (a terminal).
        total_bytes: the size of the input files, when the source reads files (the bar
            follows the bytes read).
        total_records: otherwise, how many records the source holds, if known (the bar
            follows the records read; without a total it pulses).
    """

    def __init__(
        self, stream: TextIO, total_bytes: int | None = None, total_records: int | None = None
    ) -> None:
        self._bytes = total_bytes is not None
        done = DownloadColumn() if self._bytes else MofNCompleteColumn()
        self._progress = Progress(
            TextColumn("[bold]Reading"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%") if self._bytes else TextColumn(""),
            done,
            TextColumn("{task.fields[records]:,} records" if self._bytes else "records"),
            TextColumn("{task.fields[rate]:,.0f} records/s"),
            TextColumn("{task.fields[dead]:,} dead letters"),
            TimeElapsedColumn(),
            console=Console(file=stream),
            auto_refresh=False,
        )
        total = total_bytes if self._bytes else total_records
        self._task = self._progress.add_task("read", total=total, records=0, rate=0.0, dead=0)
        self._start = LOCAL.snapshot()
        self._began = time.monotonic()

    def start(self) -> None:
        """Draws the bar for the first time."""
        self._progress.start()

    def sample(self, result: Any = None) -> None:
        """Redraws the bar from what this process counted since the bar was made."""
        counted = _since(self._start)
        records = counted.get(READ, 0)
        elapsed = max(time.monotonic() - self._began, 1e-3)
        self._progress.update(
            self._task,
            completed=counted.get(BYTES_READ, 0) if self._bytes else records,
            records=records,
            rate=records / elapsed,
            dead=counted.get(DEAD_LETTERED, 0),
        )
        self._progress.refresh()

    def stop(self) -> None:
        """Leaves the last drawing on the terminal."""
        self._progress.stop()


@dataclass
class _Sample:
    at: float
    totals: dict[str, int]


class Status:
    """The status line of a live run, refreshed from the runner's committed counters.

    ``read 1,204 (100/s) · written 1,190 (99/s) · dead-lettered 12 (1/s) · watermark
    14:02:07 UTC · 0:00:12``.

    Args:
        stream: where it is drawn (a terminal).
        delivered: the counter of records that reached their end (``written``, ``aggregated``).
    """

    def __init__(self, stream: TextIO, delivered: str) -> None:
        self._delivered = delivered
        self._progress = Progress(
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=Console(file=stream),
            auto_refresh=False,
        )
        self._task = self._progress.add_task(self.line({}, {}, 1.0, None))
        self._last = _Sample(time.monotonic(), {})

    def line(
        self, totals: dict[str, int], before: dict[str, int], seconds: float, mark: float | None
    ) -> str:
        """Returns the status line for ``totals``, rates against ``before`` ``seconds`` ago."""
        parts = []
        for name, shown in ((READ, "read"), (self._delivered, self._delivered),
                            (DEAD_LETTERED, "dead-lettered")):  # fmt: skip
            now = totals.get(name, 0)
            rate = (now - before.get(name, 0)) / seconds
            parts.append(f"{shown} {now:,} ({rate:,.0f}/s)")
        when = time.strftime("%H:%M:%S UTC", time.gmtime(mark)) if mark else "-"
        return " · ".join([*parts, f"watermark {when}"])

    def start(self) -> None:
        """Draws the line for the first time."""
        self._progress.start()

    def sample(self, result: Any = None) -> None:
        """Redraws the line from the run's committed counters (nothing before it started)."""
        if result is None:
            return
        try:
            totals = counter_totals(result.metrics())
        except RuntimeError:  # a counter appeared while they were read: the next sample has it
            return
        now = time.monotonic()
        seconds = max(now - self._last.at, 1e-3)
        line = self.line(totals, self._last.totals, seconds, live_watermark())
        self._last = _Sample(now, totals)
        self._progress.update(self._task, description=line)
        self._progress.refresh()

    def stop(self) -> None:
        """Leaves the last line on the terminal."""
        self._progress.stop()


class _Sampler:
    """Redraws a `Bar` or a `Status` every ``interval`` seconds on a thread of its own.

    While it draws on standard error, log records go through rich's stand-in for
    ``sys.stderr``, which prints them above the drawing instead of across it.
    """

    def __init__(self, display: Bar | Status, interval: float, stream: TextIO) -> None:
        self._display = display
        self._interval = interval
        self._stream = stream
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._handlers: list[logging.StreamHandler[Any]] = []
        self.result: Any = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._display.sample(self.result)

    def start(self) -> None:
        self._display.start()  # rich replaces sys.stderr while it draws on a terminal
        if sys.stderr is not self._stream:
            self._handlers = [
                handler
                for handler in logging.getLogger().handlers
                if isinstance(handler, logging.StreamHandler) and handler.stream is self._stream
            ]
            for handler in self._handlers:
                handler.setStream(sys.stderr)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for handler in self._handlers:
            handler.setStream(self._stream)
        self._display.sample(self.result)
        self._display.stop()


def _file_bytes(source: Any) -> int | None:
    """The size of the files a ``file://`` source reads, or ``None`` for another source."""
    if source.endpoint.scheme != "file":
        return None
    return sum(os.path.getsize(path) for path in glob.glob(source.endpoint.path))


def _display(config: Any, delivered: str, stream: TextIO) -> tuple[Bar | Status, float]:
    source = config.source
    if not source.bounded:
        return Status(stream, delivered), STATUS_SECONDS
    total = _file_bytes(source)
    count = getattr(source, "count", None)
    if total is not None:
        return Bar(stream, total_bytes=total), BAR_SECONDS
    return Bar(stream, total_records=count if isinstance(count, int) else None), BAR_SECONDS


@contextlib.contextmanager
def show_progress(
    config: Any,
    delivered: str,
    runner: str | None,
    console_sink: bool,
    stream: TextIO | None = None,
) -> Iterator[Callable[[Any], None]]:
    """Shows progress while the block runs, if ``stream`` (standard error) is a terminal.

    Args:
        config: the pipeline's validated config (its ``source`` says bounded or live).
        delivered: the counter of delivered records (`pipelines.catalog.PipelineSpec.delivered`).
        runner: the runner's name (``None``: the DirectRunner); elsewhere nothing is shown.
        console_sink: whether a ``console://`` sink draws on the terminal (nothing is shown).
        stream: where to draw; default standard error.

    Yields:
        ``attach(result)``: hands over the run's result once it started (a live status reads
        its committed counters).
    """
    stream = stream if stream is not None else sys.stderr
    if console_sink or runner not in LOCAL_RUNNERS or not stream.isatty():
        yield lambda result: None
        return
    display, interval = _display(config, delivered, stream)
    sampler = _Sampler(display, interval, stream)
    sampler.start()

    def attach(result: Any) -> None:
        sampler.result = result

    try:
        yield attach
    finally:
        sampler.stop()
