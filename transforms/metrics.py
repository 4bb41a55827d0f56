"""The counters behind the balance every pipeline keeps.

``read = written + dead_lettered + dropped`` holds for every pipeline run; each term is a Beam
counter in the ``pipelines`` namespace, with per-reason counters (``dead_lettered.invalid_json``,
``dropped.duplicate``...) beside the totals.

`LOCAL` mirrors the totals a process counts (and the bytes its file sources read) as they are
counted, for a progress display: a runner that runs the steps in the calling process (the
DirectRunner) makes them visible before its Beam counters are committed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, TypeVar

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricResults, MetricsFilter

__all__ = [
    "BYTES_READ",
    "DEAD_LETTERED",
    "DROPPED",
    "NAMESPACE",
    "READ",
    "RULE_ERROR",
    "SINK_REASON_PREFIX",
    "WRITTEN",
    "LOCAL",
    "Count",
    "LocalTotals",
    "ReasonCounters",
    "counter_totals",
]

NAMESPACE = "pipelines"
READ = "read"
WRITTEN = "written"
DEAD_LETTERED = "dead_lettered"
DROPPED = "dropped"
# Bytes of input files read (in `LOCAL` only: a progress figure, not a Beam counter).
BYTES_READ = "bytes_read"
# Dead-letter reasons of sinks start with this ("sink_rejected", "sink_unavailable").
SINK_REASON_PREFIX = "sink_"
# The dead-letter reason of a rule that failed on a record: what fails is the record's alert
# (an extra copy), never the record itself, which went on to its sink.
RULE_ERROR = "rule_error"

T = TypeVar("T")


class LocalTotals:
    """Totals counted in this process so far, e.g. ``{"read": 12000, "dead_lettered": 3}``.

    Thread-safe; only added to, so a reader takes a `snapshot` at the start of a run and
    subtracts it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[str, int] = {}

    def add(self, name: str, n: int) -> None:
        """Adds ``n`` to total ``name``."""
        with self._lock:
            self._totals[name] = self._totals.get(name, 0) + n

    def snapshot(self) -> dict[str, int]:
        """Returns a copy of every total."""
        with self._lock:
            return dict(self._totals)


LOCAL = LocalTotals()


class ReasonCounters:
    """Counters ``<total>`` and ``<total>.<reason>``, created on first use.

    Args:
        total: the name of the total counter, e.g. ``"dead_lettered"``.

    """

    def __init__(self, total: str) -> None:
        self._total_name = total
        self._total = Metrics.counter(NAMESPACE, total)
        self._by_reason: dict[str, Any] = {}

    def inc(self, reason: str, n: int = 1) -> None:
        """Adds ``n`` to the total and to the counter of ``reason``."""
        counter = self._by_reason.get(reason)
        if counter is None:
            counter = Metrics.counter(NAMESPACE, f"{self._total_name}.{reason}")
            self._by_reason[reason] = counter
        self._total.inc(n)
        counter.inc(n)
        LOCAL.add(self._total_name, n)


class _CountFn(beam.DoFn):
    def __init__(self, name: str) -> None:
        self._name = name

    def setup(self) -> None:
        self._counter = Metrics.counter(NAMESPACE, self._name)

    def process(self, element: T) -> Iterable[T]:
        n = len(element) if isinstance(element, list) else 1
        self._counter.inc(n)
        LOCAL.add(self._name, n)
        yield element


class Count(beam.PTransform):
    """Passes elements through unchanged, counting them in the counter ``name``.

    A block (a `transforms.blocks.Block`, or any list) counts as many as it holds; any other
    element (a `Record`, a dead-letter dict...) as one.

    Args:
        name: the counter.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return pcoll | beam.ParDo(_CountFn(self._name))


def counter_totals(metrics: MetricResults) -> dict[str, int]:
    """Sums the committed (or, where the runner has none, attempted) counters of the suite.

    Returns:
        ``{"read": 100, "written": 97, "dead_lettered": 3, "dead_lettered.invalid_json": 3}``.

    """
    totals: dict[str, int] = {}
    results = metrics.query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    for result in results:
        value = result.committed if result.committed is not None else result.attempted
        totals[result.key.metric.name] = totals.get(result.key.metric.name, 0) + (value or 0)
    return totals
