"""The benchmark jobs, each the same job done three ways (plain loops, naive Beam, the suite).

One module per job; `JOBS` maps the names ``python -m bench.run --job`` takes to them.
"""

from __future__ import annotations

from bench.jobs import (
    bigquery_sink,
    bounded_memory,
    cdc_apply,
    enrich,
    parse_dlq,
    redis_sink,
    session,
    stream_cdc_apply,
    stream_enrich,
    stream_parse_sink,
    stream_window_agg,
    streaming_agg,
    window_agg,
)
from bench.jobs.common import Job

__all__ = ["JOBS", "Job"]

JOBS: dict[str, Job] = {
    "parse_dlq": parse_dlq.JOB,
    "window_agg": window_agg.WINDOW_JOB,
    "hopping_agg": window_agg.HOPPING_JOB,
    "streaming_agg": streaming_agg.JOB,
    "session": session.JOB,
    "cdc_apply": cdc_apply.JOB,
    "redis_sink": redis_sink.JOB,
    "bigquery_sink": bigquery_sink.JOB,
    "enrich": enrich.JOB,
    "bounded_memory": bounded_memory.JOB,
    "stream_window_agg": stream_window_agg.JOB,
    "stream_window_agg_direct": stream_window_agg.DIRECT_JOB,
    "stream_parse_sink": stream_parse_sink.JOB,
    "stream_cdc_apply": stream_cdc_apply.JOB,
    "stream_enrich": stream_enrich.JOB,
}
