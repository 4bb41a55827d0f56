"""A run's counters while it lasts, handed to a listener (a live dashboard's balance).

`pipelines.framework.run.run_pipeline` reads the counters of a running pipeline once a second
and calls the pipeline's listener (`PipelineSpec.watch`) with a `RunReport` when they
changed, then once more when the run has ended, with its final state. The DirectRunner and
Dataflow give the counters of a running job; a runner that gives them only at the end (the
batch runner) gives the listener the final report alone. (What a terminal shows while a run
works is `pipelines.framework.progress`'s.)
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["INTERVAL_SECONDS", "watching"]

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 1.0


def _read(report: Callable[[], Any]) -> Any | None:
    """Returns ``report()``, or None when the runner's counters could not be read just now."""
    try:
        return report()
    except RuntimeError:  # the DirectRunner added a counter while they were read: next time
        return None


@contextlib.contextmanager
def watching(
    report: Callable[[], Any],
    listener: Callable[[Any], None] | None,
    interval: float = INTERVAL_SECONDS,
) -> Iterator[None]:
    """Calls ``listener(report())`` while the block runs, when the counters change, and at exit.

    Args:
        report: returns a `pipelines.framework.run.RunReport` of the run as it is now.
        listener: what to call with it; it must not raise (a dashboard that is away is its own
            business, never the run's). ``None``: nothing is watched.
        interval: seconds between two readings.
    """
    if listener is None:
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        shown = None
        while not stop.wait(interval):
            current = _read(report)
            if current is not None and current.counters != shown:
                listener(current)
                shown = current.counters

    thread = threading.Thread(target=watch, name="watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        final = _read(report)
        if final is not None:
            listener(final)
