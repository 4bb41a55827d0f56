"""What a pipeline reports, its dashboard and its alert queries, from one declaration.

Every metric comes from `transforms.metrics.METRICS` (through `PipelineSpec.reported`); nothing
here names a counter. On Dataflow a Beam counter is the Cloud Monitoring metric
``dataflow.googleapis.com/job/user_counter`` (labels ``metric_name``, ``ptransform``; resource
``dataflow_job`` with ``job_name``), queried here in PromQL. A dashboard is a Cloud Monitoring
dashboard JSON in which `JOB` and `SUBSCRIPTION` stand for the job's name and its input
subscription's id: the Terraform module ``terraform/modules/monitoring`` substitutes them
(``terraform/generate.py`` writes the dashboards and queries of every catalog pipeline).
"""

from __future__ import annotations

import logging
import textwrap
import time
from collections.abc import Callable
from typing import Any

from pipelines.catalog import PipelineSpec
from transforms.metrics import DEAD_LETTERED, DROPPED, OUTPUT, READ, REASON, Balance, Metric

__all__ = [
    "BALANCE_LOG_SECONDS",
    "BALANCE_WINDOW",
    "BalanceLog",
    "JOB",
    "SUBSCRIPTION",
    "THRESHOLD",
    "alerts",
    "balance_query",
    "dashboard",
    "metrics_document",
    "metrics_lines",
    "monitoring_document",
]

JOB = "__JOB_NAME__"
SUBSCRIPTION = "__SUBSCRIPTION_ID__"
BALANCE_WINDOW = "30m"
"""The window over which the production balance is checked."""
RATE_WINDOW = "5m"
_COUNTER = "dataflow_googleapis_com:job_user_counter"


def _series(names: str, regex: bool = False) -> str:
    match = "=~" if regex else "="
    return (
        f'{_COUNTER}{{monitored_resource="dataflow_job",job_name="{JOB}",'
        f'metric_name{match}"{names}"}}'
    )


def _delta(names: str, window: str, regex: bool = False) -> str:
    # How much the counters grew over the window; one that never counted adds 0.
    return f"(sum(delta({_series(names, regex)}[{window}])) or vector(0))"


def balance_query(balance: Balance, window: str = BALANCE_WINDOW) -> str:
    """PromQL: records read over ``window`` that were not delivered, dead-lettered or dropped.

    ``read (+ splits) - delivered - dead_lettered (input records only) - dropped``, each the
    growth of its counter over the window: about 0 when the balance holds (records in flight at
    both ends of the window cancel out), positive and growing when records go missing.
    """
    read = (
        _delta(f"{READ}|{balance.splits}", window, True) if balance.splits else _delta(READ, window)
    )
    dead = _delta(DEAD_LETTERED, window)
    if balance.excluded:
        excluded = "|".join(f"{prefix}.*" if prefix.endswith("_") else prefix
                            for prefix in balance.excluded)  # fmt: skip
        pattern = DEAD_LETTERED + "\\\\.(" + excluded + ")"
        dead = f"({dead} - {_delta(pattern, window, True)})"
    accounted = " - ".join((_delta(balance.delivered, window), dead, _delta(DROPPED, window)))
    return f"{read} - {accounted}"


def _rate_by(names: str, regex: bool, label: str) -> str:
    return f"sum by ({label}) (rate({_series(names, regex)}[{RATE_WINDOW}]))"


def _chart(title: str, query: str | None = None, filter_: str | None = None) -> dict[str, Any]:
    data: dict[str, Any]
    if query is not None:
        data = {"timeSeriesQuery": {"prometheusQuery": query}, "plotType": "LINE"}
    else:
        data = {
            "timeSeriesQuery": {
                "timeSeriesFilter": {
                    "filter": filter_,
                    "aggregation": {"alignmentPeriod": "60s", "perSeriesAligner": "ALIGN_MEAN"},
                }
            },
            "plotType": "LINE",
        }
    return {"title": title, "xyChart": {"dataSets": [data]}}


def _metric_charts(metric: Metric) -> list[dict[str, Any]]:
    """A metric's tiles: its rate per step; per reason or per output when it has those."""
    charts = [_chart(f"{metric.name} per second, by step", _rate_by(metric.name, False,
                                                                    "ptransform"))]  # fmt: skip
    if REASON in metric.labels:
        pattern = f"{metric.name}\\\\..+"
        charts.append(_chart(f"{metric.name} per second, by reason",
                             _rate_by(pattern, True, "metric_name")))  # fmt: skip
    if OUTPUT in metric.labels:
        pattern = f"{metric.name}(_.+)?"
        charts.append(_chart(f"{metric.name} per second, by output",
                             _rate_by(pattern, True, "metric_name")))  # fmt: skip
    return charts


# Dataflow's and Pub/Sub's own metrics, for every pipeline.
_JOB_FILTER = f'resource.type="dataflow_job" resource.label.job_name="{JOB}"'
SYSTEM_CHARTS = (
    ("System lag (s)", f'metric.type="dataflow.googleapis.com/job/system_lag" {_JOB_FILTER}'),
    (
        "Data watermark age (s)",
        f'metric.type="dataflow.googleapis.com/job/data_watermark_age" {_JOB_FILTER}',
    ),
    (
        "Subscription backlog (messages)",
        'metric.type="pubsub.googleapis.com/subscription/num_undelivered_messages" '
        f'resource.type="pubsub_subscription" resource.label.subscription_id="{SUBSCRIPTION}"',
    ),
    (
        "Oldest unacked message age (s)",
        'metric.type="pubsub.googleapis.com/subscription/oldest_unacked_message_age" '
        f'resource.type="pubsub_subscription" resource.label.subscription_id="{SUBSCRIPTION}"',
    ),
    (
        "Worker CPU utilization",
        'metric.type="compute.googleapis.com/instance/cpu/utilization" '
        f'resource.type="gce_instance" metadata.user_labels."dataflow_job_name"="{JOB}"',
    ),
)


def dashboard(spec: PipelineSpec) -> dict[str, Any]:
    """The Cloud Monitoring dashboard of ``spec`` (``JOB`` and ``SUBSCRIPTION`` placeholders).

    Tiles: the balance over `BALANCE_WINDOW`, every reported metric per step (and per reason or
    output), then system lag, data watermark age, the subscription's backlog and oldest unacked
    message age, and the workers' CPU.
    """
    charts = [_chart(f"Balance: records unaccounted over {BALANCE_WINDOW} (0 = holds)",
                     balance_query(spec.balance))]  # fmt: skip
    for metric in spec.reported:
        charts += _metric_charts(metric)
    charts += [_chart(title, filter_=filter_) for title, filter_ in SYSTEM_CHARTS]
    width, height = 6, 4
    tiles = [
        {"xPos": (i % 2) * width, "yPos": (i // 2) * height, "width": width, "height": height,
         "widget": chart}
        for i, chart in enumerate(charts)
    ]  # fmt: skip
    return {"displayName": f"{spec.name} ({JOB})", "mosaicLayout": {"columns": 12, "tiles": tiles}}


THRESHOLD = "__THRESHOLD__"
"""Stands for an alert's threshold in its query; the Terraform module's ``thresholds`` set it."""


def _system(metric: str, resource: str, label: str, value: str) -> str:
    return f'max({metric}{{monitored_resource="{resource}",{label}="{value}"}})'


def alerts(spec: PipelineSpec) -> dict[str, dict[str, str | None]]:
    """The alert set of ``spec``: PromQL conditions, the threshold each takes, what to do.

    Returns:
        ``{"dead_letters": {"query": "... > __THRESHOLD__", "threshold":
        "dead_letters_per_second", "duration": "300s", "subscription": "no", "documentation":
        "..."}, ...}``; ``subscription: "yes"`` marks the alert on the input subscription.
    """
    job = ("dataflow_job", "job_name", JOB)
    return {
        "dead_letters": {
            "query": f"sum(rate({_series(DEAD_LETTERED)}[{RATE_WINDOW}])) > {THRESHOLD}",
            "threshold": "dead_letters_per_second",
            "documentation": "Records are being dead-lettered: see dead_lettered by reason on "
            "the dashboard, fix the cause, then replay the dead letters.",
        },
        "balance": {
            "query": f"{balance_query(spec.balance)} > {THRESHOLD}",
            "threshold": "unaccounted_records",
            "documentation": f"Over {BALANCE_WINDOW}, records were read that were neither "
            "delivered, dead-lettered nor dropped: records are going missing.",
        },
        "system_lag": {
            "query": f"{_system('dataflow_googleapis_com:job_system_lag', *job)} > {THRESHOLD}",
            "threshold": "system_lag_seconds",
            "documentation": "Records wait too long to be processed: a slow sink, too few "
            "workers, or a step that is stuck.",
        },
        "data_watermark_age": {
            "query": f"{_system('dataflow_googleapis_com:job_data_watermark_age', *job)} > "
            f"{THRESHOLD}",
            "threshold": "data_watermark_age_seconds",
            "documentation": "The output is behind the input by more than the threshold.",
        },
        "backlog_age": {
            "query": _system(
                "pubsub_googleapis_com:subscription_oldest_unacked_message_age",
                "pubsub_subscription",
                "subscription_id",
                SUBSCRIPTION,
            )
            + f" > {THRESHOLD}",  # fmt: skip
            "threshold": "oldest_unacked_message_age_seconds",
            "documentation": "The input subscription holds messages older than the threshold: "
            "the job is not keeping up, or not reading.",
        },
        "job_not_running": {
            "query": f"absent({_system('dataflow_googleapis_com:job_elapsed_time', *job)}) or "
            f"{_system('dataflow_googleapis_com:job_is_failed', *job)} > 0",
            "threshold": None,
            "documentation": "The job reports no running time, or failed: launch it again.",
        },
    }


def monitoring_document(spec: PipelineSpec) -> dict[str, Any]:
    """What the Terraform module reads for ``spec``: its metrics, dashboard and alerts.

    Returns:
        ``{"metrics": [...], "dashboard": {...}, "alerts": {...}}`` (see `dashboard`, `alerts`).
    """
    return {
        "metrics": [metric.to_json() for metric in spec.reported],
        "dashboard": dashboard(spec),
        "alerts": alerts(spec),
    }


def metrics_document(spec: PipelineSpec) -> dict[str, Any]:
    """``describe --format=json``'s ``metrics`` and ``balance``."""
    balance = spec.balance
    return {
        "metrics": [metric.to_json() for metric in spec.reported],
        "balance": {
            "read": [name for name in (READ, balance.splits) if name],
            "accounted": [balance.delivered, DEAD_LETTERED, DROPPED],
            "dead_letter_reasons_not_counted": list(balance.excluded),
        },
    }


def metrics_lines(spec: PipelineSpec) -> list[str]:
    """``describe``'s metrics section: one entry per metric, with its labels and meaning."""
    balance = spec.balance
    read = f"{READ} + {balance.splits}" if balance.splits else READ
    lines = [f"Metrics (Beam counters, namespace pipelines; balance: {read} = "
             f"{balance.delivered} + dead_lettered + dropped)"]  # fmt: skip
    for metric in spec.reported:
        unit = " [seconds]" if metric.unit == "s" else ""
        lines.append(f"  {metric.name} ({metric.kind}, by {', '.join(metric.labels)}){unit}")
        lines += textwrap.wrap(metric.meaning, 92, initial_indent="      ",
                               subsequent_indent="      ")  # fmt: skip
    return [*lines, ""]


BALANCE_LOG_SECONDS = 60.0
"""How often an endless run logs its balance line."""

_LOG = logging.getLogger(__name__)


class BalanceLog:
    """Logs, once per window, how the counters of a running pipeline add up.

    One line per window, e.g. ``events_to_bigquery balance over 60 s: read +1200 = written
    +1190 + dead_lettered +10 + dropped +0; holds`` or ``...; 7 records unaccounted (in flight
    now; missing if it grows)``: the counters' growth over the window, and the records read but
    not yet delivered, dead-lettered or dropped (`transforms.metrics.Balance.unaccounted`).

    Args:
        pipeline: the pipeline's name.
        balance: how its counters add up.
        counters: returns the run's counters so far (``{"read": 1200, ...}``).
        seconds: the window (default `BALANCE_LOG_SECONDS`).
        clock: measures the window.
    """

    def __init__(
        self,
        pipeline: str,
        balance: Balance,
        counters: Callable[[], dict[str, int]],
        seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pipeline = pipeline
        self._balance = balance
        self._counters = counters
        self._seconds = BALANCE_LOG_SECONDS if seconds is None else seconds
        self._clock = clock
        self._since = clock()
        self._last = dict.fromkeys(balance.terms({}), 0)

    def tick(self) -> str | None:
        """Logs and returns the line when a window has passed since the last one, else None."""
        now = self._clock()
        if now - self._since < self._seconds:
            return None
        counters = self._counters()
        terms = self._balance.terms(counters)
        growth = {name: value - self._last.get(name, 0) for name, value in terms.items()}
        read, *accounted = (f"{name} +{value}" for name, value in growth.items())
        missing = self._balance.unaccounted(counters)
        verdict = (
            "holds"
            if missing == 0
            else f"{missing} records unaccounted (in flight now; missing if it grows)"
        )
        line = (
            f"{self._pipeline} balance over {now - self._since:.0f} s: {read} = "
            f"{' + '.join(accounted)}; {verdict}"
        )
        _LOG.log(logging.INFO if missing == 0 else logging.WARNING, line)
        self._since, self._last = now, terms
        return line
