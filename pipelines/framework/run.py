"""Runs a catalog pipeline and reports its balance: read = written + dead-lettered + dropped."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.catalog import PipelineSpec
from pipelines.framework.errors import RunFailed, explain
from pipelines.framework.options import OptionError, parse_options
from pipelines.framework.progress import watching
from transforms.io.base import Sink, Source
from transforms.io.endpoint import EndpointError, redact_option
from transforms.io.live import BUNDLE_RUNNER, live_direct_runner
from transforms.io.registry import SOURCES, load
from transforms.io.retry import OUTAGE_BEHAVIOUR
from transforms.io.runners import DIRECT, MATRIX, check_runner, matrix_lines
from transforms.metrics import (
    DEAD_LETTERED,
    DROPPED,
    READ,
    RULE_ERROR,
    SINK_REASON_PREFIX,
    WRITTEN,
    counter_totals,
)

__all__ = [
    "RunReport",
    "Stopped",
    "build_pipeline",
    "describe_document",
    "describe_options",
    "run_pipeline",
]

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    """What a run did, from the pipeline's Beam counters.

    Attributes:
        pipeline: the pipeline's name.
        state: Beam's final state (``DONE``, ``CANCELLED``...).
        counters: every counter of the suite, e.g. ``{"read": 10, "written": 9, ...}``.
        outputs: where the sink and the dead-letter sink wrote (credentials redacted).
        delivered: the counter of input records that reached their end: ``written`` for a
            pipeline that writes its records, ``aggregated`` for one that aggregates them (its
            sinks then write rows, and their failures are not input records), ``enriched`` for
            one that also writes copies (alerts, whose sink and rule failures are not input
            records either).
        stopped_by: the signal that stopped the run (``signal.SIGINT`` for Ctrl-C,
            ``signal.SIGTERM``), or ``None`` when it ended by itself or after ``--max_seconds``.
        splits: the counter of input records that became two records, if any (a CDC key
            change: a delete of the old key and an upsert of the new one); each adds one to
            the records to account for: ``read + splits = delivered + dead_lettered + dropped``.
    """

    pipeline: str
    state: str
    counters: dict[str, int]
    outputs: dict[str, str] = field(default_factory=dict)
    delivered: str = WRITTEN
    splits: str | None = None
    stopped_by: int | None = None

    def count(self, name: str) -> int:
        """Returns counter ``name`` (0 when it never counted)."""
        return self.counters.get(name, 0)

    def _input_dead_letters(self) -> int:
        total = self.count(DEAD_LETTERED)
        if self.delivered == WRITTEN:
            return total
        return total - sum(
            value
            for name, value in self.counters.items()
            if name.startswith(f"{DEAD_LETTERED}.{SINK_REASON_PREFIX}")
            or name == f"{DEAD_LETTERED}.{RULE_ERROR}"
        )

    @property
    def in_flight(self) -> int:
        """Read (+ splits) - delivered (written or aggregated) - dead-lettered - dropped.

        The records not accounted for yet: 0 when a run has ended balanced.
        """
        accounted = self.count(self.delivered) + self._input_dead_letters() + self.count(DROPPED)
        return self.count(READ) + self._split() - accounted

    @property
    def balanced(self) -> bool:
        """Whether read (+ splits) = delivered (written or aggregated) + dead-lettered + dropped."""
        return self.in_flight == 0

    def _split(self) -> int:
        return self.count(self.splits) if self.splits else 0

    def render(self) -> str:
        """Returns the report as a few lines for a person."""
        lines = [f"{self.pipeline}: {self.state}"]
        if self.stopped_by is not None:
            lines[0] += f" (stopped by {signal.Signals(self.stopped_by).name})"
        lines += [f"  {role:<12} {uri}" for role, uri in self.outputs.items()]
        totals = [READ, WRITTEN, DEAD_LETTERED, DROPPED]
        if self.delivered != WRITTEN:
            totals.insert(1, self.delivered)
        for total in totals:
            reasons = sorted(
                (name.split(".", 1)[1], value)
                for name, value in self.counters.items()
                if name.startswith(total + ".")
            )
            detail = ", ".join(f"{reason}: {value}" for reason, value in reasons)
            line = f"  {total:<14}{self.count(total):>10}"
            lines.append(line + (f"  ({detail})" if detail else ""))
        others = sorted(name for name in self.counters if name.split(".")[0] not in totals)
        lines += [f"  {name:<14}{self.count(name):>10}" for name in others]
        verdict = "balanced" if self.balanced else "NOT balanced (records in flight at cancel?)"
        dead = "dead_lettered" if self.delivered == WRITTEN else "dead_lettered (input)"
        read = f"read + {self.splits}" if self._split() else "read"
        lines.append(f"  {read} = {self.delivered} + {dead} + dropped: {verdict}")
        return "\n".join(lines)


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


def _wait(result: Any, source: Any, max_seconds: float) -> int | None:
    """Waits for a bounded run; runs a live one until it ends, ``max_seconds`` or a signal.

    Returns the signal (Ctrl-C's SIGINT, SIGTERM) that stopped the run, if any.
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


def _failed(spec: PipelineSpec, config: Any, failure: Exception) -> RunFailed:
    """Says in one line that a run failed, why, and how to reach the servers it uses."""
    detail = explain(failure)[1]
    schemes = {getattr(config, flag).endpoint.scheme for flag in ("source", "sink", "dead_letter")}
    hints = []
    for scheme in sorted(schemes & set(_EMULATORS)):
        variable = _EMULATORS[scheme]
        if os.environ.get(variable):
            hints.append(f"is the server at {variable}={os.environ[variable]} up?")
        else:
            hints.append(f"{variable} is not set (credentials are used)")
    hint = (
        f"; {'; '.join(hints)} (local servers: python -m pipelines services status, and "
        'eval "$(python -m pipelines services env)")'
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


def run_pipeline(spec: PipelineSpec, argv: Sequence[str]) -> RunReport:
    """Builds and runs the pipeline (see `build_pipeline`) and returns its report.

    A bounded run ends by itself; an endless one is cancelled after ``--max_seconds``, on Ctrl-C
    or on SIGTERM (the report says which signal stopped it). The DirectRunner runs it with the
    live driver of `transforms.io.live` enabled.
    """
    pipeline, config = build_pipeline(spec, argv)
    listener = spec.progress(config) if spec.progress is not None else None
    with _stop_on_sigterm(), live_direct_runner():
        result = pipeline.run()
        with watching(lambda: _report(spec, config, result), listener):
            try:
                stopped_by = _wait(result, config.source, config.max_seconds)
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


def _delivery() -> dict[str, dict[str, str]]:
    """Returns what each source scheme guarantees per runner when a run is killed."""
    return {
        scheme: dict(sorted(load(target).delivery.items()))
        for scheme, target in sorted(SOURCES.items())
    }


def _delivery_lines() -> list[str]:
    lines = ["delivery (what a source guarantees when a run is killed):"]
    for scheme, by_runner in _delivery().items():
        lines += [f"  {scheme} on {runner}: {guarantee}" for runner, guarantee in by_runner.items()]
    return lines + [""]


def describe_document(spec: PipelineSpec) -> dict[str, Any]:
    """Returns what `describe_options` shows, as JSON data (``describe --format=json``).

    Returns:
        ``{"name": ..., "description": ..., "runners": [{"role": "source", "schemes":
        ["generator", "file"], "kind": "", "runners": [...], "notes": {...}}, ...],
        "delivery": {"file": {"DirectRunner": "..."}},
        "sink_outages": "...", "options": [{"name": "source", "help": ..., "required": true,
        "default": null, "choices": [], "group": "Endpoints"}, ...]}``; secret defaults masked.
    """
    return {
        "name": spec.name,
        "description": spec.description,
        "runners": [
            {
                "role": row.role,
                "schemes": list(row.schemes),
                "kind": row.kind,
                "runners": sorted(row.runners),
                "notes": dict(row.notes),
            }
            for row in MATRIX
        ],
        "delivery": _delivery(),
        "sink_outages": OUTAGE_BEHAVIOUR,
        "options": [
            {
                "name": option.name,
                "help": option.help,
                "required": option.required,
                "default": None
                if option.required
                else redact_option(option.name, str(option.default)),
                "choices": list(option.choices),
                "group": option.group,
            }
            for option in spec.options
        ],
    }


def describe_options(spec: PipelineSpec) -> str:
    """Returns the options of ``spec`` with help and defaults, runners and delivery."""
    lines = [spec.name, "", spec.description, "", *matrix_lines(), "", *_delivery_lines()]
    lines += ["Sink outages", *textwrap.wrap(OUTAGE_BEHAVIOUR, 96, initial_indent="  ",
                                             subsequent_indent="  "), ""]  # fmt: skip
    for option in spec.options:
        flag = f"--{option.name}" + (" (required)" if option.required else "")
        lines.append(flag)
        lines.append(f"    {option.help}")
        if option.choices:
            lines.append(f"    one of: {', '.join(option.choices)}")
        if not option.required:
            lines.append(f"    default: {redact_option(option.name, str(option.default))}")
    return "\n".join(lines)
