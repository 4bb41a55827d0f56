"""Runs a catalog pipeline and reports its balance: read = written + dead-lettered + dropped."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.catalog import PipelineSpec
from pipelines.framework import managed
from pipelines.framework.errors import RunFailed, explain
from pipelines.framework.monitoring import BalanceLog
from pipelines.framework.options import OptionError, parse_options
from pipelines.framework.progress import show_progress
from pipelines.framework.report import RunReport
from pipelines.framework.watch import watching
from transforms.io.base import Sink, Source
from transforms.io.endpoint import EndpointError
from transforms.io.live import BUNDLE_RUNNER, live_direct_runner
from transforms.io.runners import DIRECT, check_runner
from transforms.metrics import counter_totals

__all__ = ["RunReport", "Stopped", "build_pipeline", "run_collector", "run_pipeline"]

log = logging.getLogger(__name__)


def _ios(value: Any) -> Iterator[Source | Sink]:
    """Yields every source and sink a pipeline's config holds, however deep."""
    if isinstance(value, (Source, Sink)):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from _ios(getattr(value, item.name))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _ios(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _ios(item)


def _beam_options(config: Any, beam_args: list[str]) -> PipelineOptions:
    """Beam's options of a run; refuses a source or sink of ``config`` the runner cannot run."""
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    runner = standard.runner or DIRECT
    for io in _ios(config):
        try:
            check_runner(io, runner)
        except EndpointError as error:
            raise OptionError(str(error)) from None
    source = config.source
    if not source.bounded:
        standard.streaming = True
    named = runner if isinstance(runner, str) else type(runner).__name__
    if source.live_on_direct and named == DIRECT:
        standard.runner = BUNDLE_RUNNER
    return options


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM, so that it stops a run as Ctrl-C does."""

    signum = signal.SIGTERM


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Turns SIGTERM into `Stopped` while a run lasts (in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise Stopped

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait(result: Any, source: Any, max_seconds: float, balance: BalanceLog) -> int | None:
    """Waits for a bounded run; runs a live one until it ends, ``max_seconds`` or a signal.

    A live run logs its ``balance`` line once per window. Returns the signal (Ctrl-C's SIGINT,
    SIGTERM) that stopped the run, if any.
    """
    if source.bounded:
        result.wait_until_finish()
        return None
    failures: list[BaseException] = []  # a failed run (a source that fails for good) ends here

    def wait() -> None:
        try:
            result.wait_until_finish()
        except BaseException as error:  # re-raised in the calling thread
            failures.append(error)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    deadline = time.monotonic() + max_seconds if max_seconds > 0 else None
    stopped_by: int | None = None
    try:
        while waiter.is_alive() and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
            balance.tick()
    except KeyboardInterrupt as stop:
        stopped_by = int(getattr(stop, "signum", signal.SIGINT))
    if failures:
        raise failures[0]
    if not waiter.is_alive():
        return stopped_by
    # Beam's own Pub/Sub read finishes its pending pull (up to 30 s) before it stops.
    log.warning("stopping the pipeline: waiting for its sources to let go")
    result.cancel()
    return stopped_by


# The young generation's threshold during a run: a block of a thousand records (a few thousand
# tracked objects) then dies before the collector looks at it.
RUN_GC_THRESHOLD = 10_000


@contextlib.contextmanager
def run_collector() -> Iterator[None]:
    """Sets Python's cyclic garbage collector for a run in this process, then restores it.

    The collector looks at the young objects after every 700 new ones (gc's threshold) and
    promotes those still alive; each full collection, run once enough have been promoted, walks
    every tracked object: the modules, Beam's and the graph's (about 260,000). A step that holds
    a block of records while it makes the next (most of them) lets its records outlive the
    young generations, so a CDC run of 100,000 changes ran 1,450 collections, 10 of them full,
    1-1.5 s of a 4 s run. Inside this block what was alive before the run sits in the permanent
    generation (``gc.freeze``), so a full collection walks only what the run made, and the young
    threshold is `RUN_GC_THRESHOLD`, so a block mostly dies young: the same run then spends
    0.03 s in 12 collections. On leaving, ``gc.unfreeze`` and the earlier thresholds.

    A process-wide setting, so it is an explicit step of `run_pipeline` (the command line's
    run) for runs in this process; the SDK harness of a managed runner is another process.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], RUN_GC_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _check_paths(config: Any) -> None:
    """Refuses a file source that names a folder, and a file sink whose folder is a file."""
    source = config.source
    if source.endpoint.scheme == "file" and os.path.isdir(source.endpoint.path):
        path = source.endpoint.path.rstrip("/")
        raise OptionError(
            f"--source={source.endpoint}: {path} is a folder; name its files, e.g. "
            f"file://{path}/*.jsonl"
        )
    for flag in ("sink", "dead_letter"):
        endpoint = getattr(config, flag).endpoint
        if endpoint.scheme != "file" or not endpoint.path:
            continue
        existing = endpoint.path
        while not os.path.exists(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise OptionError(
                f"--{flag}={endpoint}: {existing} is a file; a file sink writes files into a "
                "folder: name a folder (new or existing)"
            )


def _remove_empty_temp_folders(config: Any) -> None:
    """Removes the empty ``.temp<uuid>`` folders Beam's file writes leave in file sinks' folders."""
    for flag in ("sink", "dead_letter"):
        endpoint = getattr(config, flag).endpoint
        if endpoint.scheme != "file" or not os.path.isdir(endpoint.path):
            continue
        for entry in os.scandir(endpoint.path):
            if entry.name.startswith(".temp") and entry.is_dir():
                with contextlib.suppress(OSError):  # not empty: keep it
                    os.rmdir(entry.path)


_EMULATORS = {"pubsub": "PUBSUB_EMULATOR_HOST", "bigquery": "BIGQUERY_EMULATOR_HOST"}
# What a failure says when a server did not answer (rather than refused what it was asked).
_UNANSWERED = re.compile(
    r"unavailable|connection refused|failed to connect|deadline exceeded|timed? ?out|"
    r"name or service not known|name resolution|connect(ion)? error",
    re.IGNORECASE,
)


def _failed(spec: PipelineSpec, config: Any, failure: Exception) -> RunFailed:
    """Says in one line why a run failed, and how to reach its servers if one did not answer."""
    detail = explain(failure)[1]
    schemes = {getattr(config, flag).endpoint.scheme for flag in ("source", "sink", "dead_letter")}
    if not _UNANSWERED.search(detail):
        schemes = set()
    hints = []
    for scheme in sorted(schemes & set(_EMULATORS)):
        variable = _EMULATORS[scheme]
        if os.environ.get(variable):
            hints.append(f"is the server at {variable}={os.environ[variable]} up?")
        else:
            hints.append(f"{variable} is not set (credentials are used)")
    hint = (
        f"; {'; '.join(hints)} (local servers: python -m pipelines.devtools services status, and "
        'eval "$(python -m pipelines.devtools services env)")'
        if hints
        else ""
    )
    return RunFailed(f"{spec.name} stopped: {detail}{hint}")


def build_pipeline(spec: PipelineSpec, argv: Sequence[str]) -> tuple[beam.Pipeline, Any]:
    """Parses and validates options, and builds the pipeline's graph without running it.

    Args:
        spec: the pipeline.
        argv: ``["--source=...", "--sink=...", ...]``; options the pipeline does not declare
            are passed to Beam (``--runner``, ``--streaming``...).

    Returns:
        ``(pipeline, config)``: the Beam pipeline, ready to ``run()``, and the validated config.

    Raises:
        OptionError, EndpointError: an option cannot be used (before anything runs).
    """
    values, beam_args = parse_options(
        f"pipelines run {spec.name}", spec.description, spec.options, argv
    )
    config = spec.configure(values)
    _check_paths(config)
    pipeline = beam.Pipeline(options=_beam_options(config, beam_args))
    spec.build(pipeline, config)
    return pipeline, config


def _runner_name(pipeline: beam.Pipeline) -> str | None:
    runner = pipeline.options.view_as(StandardOptions).runner
    return runner if runner is None or isinstance(runner, str) else type(runner).__name__


def run_pipeline(spec: PipelineSpec, argv: Sequence[str], wait: bool = False) -> RunReport:
    """Builds and runs the pipeline (see `build_pipeline`) and returns its report.

    A bounded run ends by itself; an endless one is cancelled after ``--max_seconds``, on Ctrl-C
    or on SIGTERM (the report says which signal stopped it). The DirectRunner runs it with the
    live driver of `transforms.io.live` enabled. On a terminal, a progress bar (bounded) or a
    status line (live) shows on standard error while it runs (`pipelines.framework.progress`).
    On Dataflow the job is submitted and the report names it; ``wait`` follows it
    (`pipelines.framework.managed`), never cancelling it.
    """
    pipeline, config = build_pipeline(spec, argv)
    if managed.is_managed(pipeline.options):
        with _stop_on_sigterm():
            job = managed.job_of(pipeline.options, pipeline.run())
            state = managed.submitted(job, wait, config.max_seconds)
        return RunReport(spec.name, state, {}, {"job": job.job_id, "console": job.console})
    console_sink = any(io.endpoint.scheme == "console" for io in _ios(config))
    progress = show_progress(config, spec.delivered, _runner_name(pipeline), console_sink)
    listener = spec.watch(config) if spec.watch is not None else None
    with _stop_on_sigterm(), live_direct_runner(), run_collector(), progress as attach:
        result = pipeline.run()
        attach(result)
        with watching(lambda: _report(spec, config, result), listener):
            try:
                balance = BalanceLog(
                    spec.name, spec.balance, lambda: counter_totals(result.metrics())
                )
                stopped_by = _wait(result, config.source, config.max_seconds, balance)
            except Exception as failure:
                raise _failed(spec, config, failure) from failure
    if str(result.state) == "DONE":
        _remove_empty_temp_folders(config)
    console = sys.modules.get("transforms.io.console")
    if console is not None:  # a console sink ran: print its final table before the report
        console.LiveTable.close_all()
    return dataclasses.replace(_report(spec, config, result), stopped_by=stopped_by)


def _report(spec: PipelineSpec, config: Any, result: Any) -> RunReport:
    """The report of a run as its counters are now."""
    return RunReport(
        pipeline=spec.name,
        state=str(result.state),
        counters=counter_totals(result.metrics()),
        delivered=spec.delivered,
        splits=spec.splits,
        outputs={
            "source": str(config.source.endpoint),
            "sink": str(config.sink.endpoint),
            "dead_letter": str(config.dead_letter.endpoint),
        },
    )
