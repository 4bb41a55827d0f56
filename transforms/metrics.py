"""The counters behind the balance every pipeline keeps, declared once.

``read = written + dead_lettered + dropped`` holds for every pipeline run; each term is a Beam
counter in the ``pipelines`` namespace, with per-reason counters (``dead_lettered.invalid_json``,
``dropped.duplicate``...) beside the totals.

Every counter the suite reports is declared here, once, as a `Metric` (name, kind, labels,
meaning): the code that counts takes the declared name (`counter` refuses any other), and
``python -m pipelines describe NAME`` and the Terraform dashboards and alerts
(``terraform/generate.py``) are built from `METRICS`. On Dataflow a counter is the Cloud
Monitoring metric ``dataflow.googleapis.com/job/user_counter`` with ``metric_name`` the
counter's name and ``ptransform`` the step that counted it.

`LOCAL` mirrors the totals a process counts (and the bytes its file sources read) as they are
counted, for a progress display: a runner that runs the steps in the calling process (the
DirectRunner) makes them visible before its Beam counters are committed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricResults, MetricsFilter

__all__ = [
    "AGGREGATED",
    "AGGREGATION",
    "APPLIED",
    "BYTES_READ",
    "CDC",
    "COMMON",
    "DEAD_LETTERED",
    "DROPPED",
    "ENRICHED",
    "ENRICHMENT",
    "LOCAL",
    "METRICS",
    "NAMESPACE",
    "READ",
    "RULE_ERROR",
    "SINK_REASON_PREFIX",
    "WRITTEN",
    "WRITTEN_DEAD_LETTERS",
    "Balance",
    "Count",
    "LocalTotals",
    "Metric",
    "ReasonCounters",
    "counter",
    "counter_totals",
    "declared",
]

NAMESPACE = "pipelines"
# Bytes of input files read (in `LOCAL` only: a progress figure, not a Beam counter).
BYTES_READ = "bytes_read"
# Dead-letter reasons of sinks start with this ("sink_rejected", "sink_unavailable").
SINK_REASON_PREFIX = "sink_"
# The dead-letter reason of a rule that failed on a record: what fails is the record's alert
# (an extra copy), never the record itself, which went on to its sink.
RULE_ERROR = "rule_error"

COUNTER = "counter"
STEP = "step"
"""Label: the step that counted (Dataflow's ``ptransform``)."""
REASON = "reason"
"""Label: a counter ``NAME.<reason>`` beside the total ``NAME``, one per reason."""
OUTPUT = "output"
"""Label: a counter ``NAME_<output>`` per extra output (a side sink, an alert rule's sink)."""

T = TypeVar("T")


@dataclass(frozen=True)
class Metric:
    """One metric the suite reports.

    Attributes:
        name: the Beam counter's name, e.g. ``"dead_lettered"``.
        kind: ``"counter"`` (Beam counters only go up).
        meaning: what one unit of it is, for a person.
        labels: what tells its series apart: ``step`` always; ``reason`` for a counter with
            per-reason counters ``NAME.<reason>``; ``output`` for ``NAME_<output>`` counters.
        unit: ``"1"`` (records, requests...) or ``"s"`` (seconds).
    """

    name: str
    kind: str
    meaning: str
    labels: tuple[str, ...] = (STEP,)
    unit: str = "1"

    def to_json(self) -> dict[str, Any]:
        """``{"name": ..., "kind": ..., "labels": [...], "unit": ..., "meaning": ...}``."""
        return {
            "name": self.name,
            "kind": self.kind,
            "labels": list(self.labels),
            "unit": self.unit,
            "meaning": self.meaning,
        }


METRICS: dict[str, Metric] = {}
"""Every metric of the suite by name, in declaration order."""


def _declare(name: str, meaning: str, *labels: str, unit: str = "1") -> str:
    METRICS[name] = Metric(name, COUNTER, meaning, (STEP, *labels), unit)
    return name


# ---- Every pipeline: the balance read = written + dead_lettered + dropped, and the sinks ----
READ = _declare("read", "Messages read from the source, counted before Parse.")
WRITTEN = _declare(
    "written",
    "Records the main sink wrote; written_<output>: rows an extra output (publish, history, "
    "console) wrote.",
    OUTPUT,
)
DEAD_LETTERED = _declare(
    "dead_lettered",
    "Records sent to the dead-letter sink, in total and per reason (dead_lettered.<reason>).",
    REASON,
)
DROPPED = _declare(
    "dropped",
    "Records left out on purpose (duplicates, tombstones, stale changes...), per reason.",
    REASON,
)
WRITTEN_DEAD_LETTERS = _declare(
    "written_dead_letters", "Dead-letter records the dead-letter sink wrote."
)
SINK_RETRIES = _declare(
    "sink_retries",
    "Requests a sink sent again after a transient failure (an outage, throttling).",
)
SINK_OUTAGE_SECONDS = _declare(
    "sink_outage_seconds",
    "Seconds sinks spent retrying until a system was back, counted when it recovers.",
    unit="s",
)
COMMON = (READ, WRITTEN, DEAD_LETTERED, DROPPED, WRITTEN_DEAD_LETTERS, SINK_RETRIES,
          SINK_OUTAGE_SECONDS)  # fmt: skip
"""The metrics every pipeline reports."""

# ---- Windowed aggregation ----
AGGREGATED = _declare("aggregated", "Records folded into a window's aggregate.")
NOT_AGGREGATED = _declare(
    "not_aggregated",
    "Records a side aggregation could not take (counted, not dead-lettered), per reason.",
    REASON,
)
LATE = _declare("late_records", "Records later than the allowed lateness (dead-lettered).")
HAVING_FAILED = _declare("having_failed", "Output rows whose having expression failed.")
OVERFLOWED = _declare(
    "aggregate_overflows",
    "Sums and means beyond 64-bit integers or the float range, written as null.",
)
WRITTEN_COUNTS = _declare("written_counts", "Count rows the counts sink wrote.")

# ---- Enrich and alert ----
ENRICHED = _declare("enriched", "Records enriched and passed on to the sink.")
WRITTEN_ALERTS = _declare(
    "written_alerts",
    "Alerts the alert sink wrote; written_alerts_<rule>: a rule's own sink.",
    OUTPUT,
)
ENRICH_ROWS_SKIPPED = _declare(
    "enrich_rows_skipped", "Reference rows skipped on load (no key, not an object)."
)
ENRICH_ROWS_REPLACED = _declare(
    "enrich_rows_replaced", "Reference rows replaced on load by a later row of the same key."
)
ENRICH_LOAD_FAILURES = _declare(
    "enrich_load_failures", "Reference table loads that failed (the previous table is kept)."
)
ENRICH_CHANGES_STALE = _declare(
    "enrich_changes_stale", "Reference changes older than the row already held."
)
ENRICH_CHANGES_SKIPPED = _declare(
    "enrich_changes_skipped", "Reference changes without a key, skipped."
)

# ---- CDC ----
APPLIED = _declare("applied", "Changes applied to the replica (the CDC pipeline's delivered).")
KEY_CHANGES = _declare(
    "cdc_key_changes", "Updates that changed a row's key: a delete and an upsert each."
)
REPLICA_MERGES = _declare("replica_merges", "MERGE statements run from staging to replica.")
# ---- Dead-letter replay ----
PARKED = _declare(
    "parked", "Dead letters parked instead of replayed, per why (max_replays, truncated).", REASON
)
WOULD_REPLAY = _declare(
    "would_replay", "Dry run: dead letters a replay would send, per reason.", REASON
)
WOULD_PARK = _declare("would_park", "Dry run: dead letters a replay would park, per why.", REASON)

AGGREGATION = (AGGREGATED, NOT_AGGREGATED, LATE, HAVING_FAILED, OVERFLOWED)
"""The metrics of a windowed aggregation (`transforms.aggregate.windowed.WindowedAggregate`)."""
ENRICHMENT = (ENRICHED, WRITTEN_ALERTS, ENRICH_ROWS_SKIPPED, ENRICH_ROWS_REPLACED,
              ENRICH_LOAD_FAILURES, ENRICH_CHANGES_STALE, ENRICH_CHANGES_SKIPPED)  # fmt: skip
"""The metrics of enrich_and_alert's steps and sinks."""
CDC = (APPLIED, KEY_CHANGES, REPLICA_MERGES)
"""The metrics of the CDC steps and the replica sink."""
REPLAY = (PARKED, WOULD_REPLAY, WOULD_PARK)
"""The metrics of dlq_replay."""


def declared(name: str) -> Metric:
    """Returns the declared metric a counter name belongs to.

    ``dead_lettered.invalid_json`` belongs to ``dead_lettered`` (label ``reason``),
    ``written_alerts_high`` to ``written_alerts`` (label ``output``).

    Raises:
        KeyError: no declared metric has that name; declare it in `transforms.metrics`.
    """
    if name in METRICS:
        return METRICS[name]
    base, dot, _ = name.partition(".")
    if dot and REASON in METRICS.get(base, Metric(base, COUNTER, "")).labels:
        return METRICS[base]
    for metric in sorted(METRICS.values(), key=lambda m: -len(m.name)):
        if OUTPUT in metric.labels and name.startswith(metric.name + "_"):
            return metric
    raise KeyError(f"counter {name!r} is not declared in transforms/metrics.py (METRICS)")


def counter(name: str) -> Any:
    """Returns the Beam counter ``name`` of the suite's namespace, once `declared`."""
    declared(name)
    return Metrics.counter(NAMESPACE, name)


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
        self._total = counter(total)
        self._by_reason: dict[str, Any] = {}

    def inc(self, reason: str, n: int = 1) -> None:
        """Adds ``n`` to the total and to the counter of ``reason``."""
        by_reason = self._by_reason.get(reason)
        if by_reason is None:
            by_reason = counter(f"{self._total_name}.{reason}")
            self._by_reason[reason] = by_reason
        self._total.inc(n)
        by_reason.inc(n)
        LOCAL.add(self._total_name, n)


class _CountFn(beam.DoFn):
    def __init__(self, name: str) -> None:
        self._name = name

    def setup(self) -> None:
        self._counter = counter(self._name)

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
        declared(name)
        self._name = name

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        # The output keeps the input's type (a Block keeps its coder, which sizes it cheaply).
        return pcoll | beam.ParDo(_CountFn(self._name)).with_output_types(pcoll.element_type)


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


@dataclass(frozen=True)
class Balance:
    """How a pipeline's counters add up: ``read (+ splits) = delivered + dead_lettered + dropped``.

    Attributes:
        delivered: the counter of input records that reached their end: ``written``, or
            ``aggregated``, ``enriched``, ``applied`` for a pipeline whose sinks write rows,
            copies or changes (their sinks' failures, reasons ``sink_*`` and ``rule_error``,
            are then not input records and do not count).
        splits: the counter of input records that became two (a CDC key change), if any.
    """

    delivered: str = WRITTEN
    splits: str | None = None

    def __post_init__(self) -> None:
        declared(self.delivered)
        if self.splits is not None:
            declared(self.splits)

    @property
    def excluded(self) -> tuple[str, ...]:
        """Dead-letter reason prefixes that are not input records (``sink_``, ``rule_error``)."""
        return () if self.delivered == WRITTEN else (SINK_REASON_PREFIX, RULE_ERROR)

    def terms(self, counters: Mapping[str, int]) -> dict[str, int]:
        """``{"read": ..., "delivered": ..., "dead_lettered": ..., "dropped": ...}``.

        ``read`` includes the splits, ``dead_lettered`` only the input records' dead letters.
        """
        dead = counters.get(DEAD_LETTERED, 0) - sum(
            value
            for name, value in counters.items()
            if any(name.startswith(f"{DEAD_LETTERED}.{prefix}") for prefix in self.excluded)
        )
        return {
            READ: counters.get(READ, 0) + (counters.get(self.splits, 0) if self.splits else 0),
            self.delivered: counters.get(self.delivered, 0),
            DEAD_LETTERED: dead,
            DROPPED: counters.get(DROPPED, 0),
        }

    def unaccounted(self, counters: Mapping[str, int]) -> int:
        """Records read but not (yet) delivered, dead-lettered or dropped: 0 when it holds."""
        read, *accounted = self.terms(counters).values()
        return read - sum(accounted)
