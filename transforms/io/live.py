"""Live (endless or paced) reads on the local DirectRunner.

Beam's Python DirectRunner streams live only from Pub/Sub: its FnApiRunner runs endless sources
with batch behaviour (windows fire when the source ends). This module drives any `LiveReader`
the way the streaming BundleBasedDirectRunner drives Pub/Sub: a native root transform,
`DirectLiveRead`, whose evaluator asks the reader for what is available, emits it, holds the
watermark at the reader's watermark, and re-schedules itself until the reader is done. Windows
then close as the watermark passes them, early triggers fire, and the pipeline ends by itself
when a finite reader is exhausted.

A reader that acknowledges what it read only once it is written (`SettlingReader`) has its
``settled()`` called before a read whenever no work is pending in any step downstream of it: no
bundle waiting or in process, no timer firing, no element held in a window (a watermark hold).
Everything it handed over before has then been written, dead letters included.

It relies on the DirectRunner's private evaluator registry (Beam pinned to 2.77.x; kept honest
by ``tests/transforms/io/test_live.py``). On other runners sources use their portable path.
Importing this module changes nothing in Beam: `enable_live_direct_runner` (for a whole
process, as the command line does) or `live_direct_runner` (for a block, restoring Beam as it
was after it) installs the evaluator, and the fix below, before a pipeline runs.

A finite `SettlingReader` that is done is driven on until the pipeline settles once more, so
its last position is acknowledged too (a Kafka reader commits its offsets then): a run killed at
any point reads again, from the last settled position, every record whose outputs or dead
letters may not have been written.

Enabling the live driver also mends a defect of Beam 2.77's streaming DirectRunner that would
make every count of the suite wrong there: each worker thread's state sampler caches a step's scoped
state with the metrics container of the step's first bundle, so later bundles update a
container that was already committed and their counters are lost. `_PerBundleStateSampler`
gives each bundle's own container its scoped state.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, Protocol, runtime_checkable

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.runners.direct import executor
from apache_beam.runners.direct.transform_evaluator import (
    TransformEvaluatorRegistry,
    TransformResult,
    _TransformEvaluator,
)
from apache_beam.runners.worker import statesampler
from apache_beam.transforms.window import GlobalWindows, TimestampedValue
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Duration, Timestamp

__all__ = [
    "BUNDLE_RUNNER",
    "DirectLiveRead",
    "LiveReader",
    "SettlingReader",
    "enable_live_direct_runner",
    "live_direct_runner",
    "live_watermark",
]

BUNDLE_RUNNER = "BundleBasedDirectRunner"
MAX_BATCH = 1_000
SETTLE_WAIT_SECONDS = 0.05  # a done reader's wait between checks of whether the pipeline settled
# The watermark of a done reader that waits for the pipeline to settle: past every window's end
# (the global window's too), yet short of the end of time, which would end the run first.
_LAST_HOLD = MAX_TIMESTAMP - Duration(micros=1)


class LiveReader(Protocol):
    """What `DirectLiveRead` drives: one reader per pipeline run, called from one thread."""

    def read(self, limit: int) -> list[TimestampedValue]:
        """Returns up to ``limit`` available elements; may wait briefly when none are."""
        ...

    @property
    def watermark(self) -> float:
        """No element read later has an event time before this (epoch seconds)."""
        ...

    @property
    def done(self) -> bool:
        """Whether the reader is exhausted (a finite stream has ended)."""
        ...


@runtime_checkable
class SettlingReader(LiveReader, Protocol):
    """A `LiveReader` told when everything it handed over has been processed."""

    def settled(self) -> None:
        """Called before a read when no step downstream of the read has work pending."""
        ...


class DirectLiveRead(beam.PTransform):
    """The native root transform of a live read; executed by `_LiveReadEvaluator`.

    Args:
        make_reader: builds the reader when the pipeline first runs (it must pickle).
    """

    def __init__(self, make_reader: Any) -> None:
        super().__init__()
        self.make_reader = make_reader

    def get_windowing(self, unused_inputs: Any) -> beam.Windowing:
        return beam.Windowing(GlobalWindows())

    def expand(self, pbegin: pvalue.PBegin) -> pvalue.PCollection:
        return pvalue.PCollection(pbegin.pipeline, is_bounded=False)


class _LiveReadEvaluator(_TransformEvaluator):
    """Reads what is available, emits it, holds the watermark, and comes back for more."""

    _readers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    def _read(self) -> DirectLiveRead:
        transform = self._applied_ptransform.transform
        assert isinstance(transform, DirectLiveRead)
        return transform

    def _reader(self) -> LiveReader:
        applied = self._applied_ptransform
        with self._lock:
            reader = self._readers.get(applied)
            if reader is None:
                reader = self._read().make_reader()
                self._readers[applied] = reader
            return reader

    def _steps_after(self) -> list[Any]:
        """The applied transforms that consume, directly or not, what the read emits."""
        consumers = self._evaluation_context._value_to_consumers
        steps: list[Any] = []
        todo = list(self._applied_ptransform.outputs.values())
        while todo:
            for consumer in consumers.get(todo.pop(), ()):
                if consumer not in steps:
                    steps.append(consumer)
                    todo.extend(consumer.outputs.values())
        return steps

    def _idle_after(self) -> bool:
        """Whether no step after the read has a bundle, a fired timer or a hold pending."""
        context = self._evaluation_context
        with context._lock:  # the runner commits results under this lock
            for step in self._steps_after():
                marks = context._watermark_manager.get_watermarks(step)
                if marks._pending or marks._fired_timers or marks._keyed_earliest_holds:
                    return False
        return True

    def start_bundle(self) -> None:
        pass

    def process_element(self, element: Any) -> None:
        pass

    def finish_bundle(self) -> TransformResult:
        reader = self._reader()
        settling = isinstance(reader, SettlingReader)
        settled = settling and self._idle_after()
        if settled:
            reader.settled()  # type: ignore[attr-defined]
        root = pvalue.PBegin(self._read().pipeline)  # type: ignore[arg-type]
        if reader.done and settling and not settled:
            # Drive the done reader on until the pipeline settles; every window may fire.
            time.sleep(SETTLE_WAIT_SECONDS)
            again = self._evaluation_context.create_bundle(root)
            return TransformResult(self, [], [again], None, {None: _LAST_HOLD})
        elements = reader.read(MAX_BATCH)
        bundles = []
        if elements:
            bundle = self._evaluation_context.create_bundle(list(self._outputs)[0])
            for element in elements:
                bundle.output(
                    GlobalWindows.windowed_value(element.value, timestamp=element.timestamp)
                )
            bundles.append(bundle)
        if reader.done and (not settling or (settled and not elements)):
            return TransformResult(self, bundles, [], None, {None: MAX_TIMESTAMP})
        again = self._evaluation_context.create_bundle(root)
        hold = _LAST_HOLD if reader.done else Timestamp.of(reader.watermark)
        return TransformResult(self, bundles, [again], None, {None: hold})


def live_watermark() -> float | None:
    """The lowest watermark of the live readers driven in this process (epoch seconds).

    ``None`` when no `DirectLiveRead` has started reading (for a progress display).
    """
    with _LiveReadEvaluator._lock:
        marks = [reader.watermark for reader in _LiveReadEvaluator._readers.values()]
    return min(marks) if marks else None


class _PerBundleStateSampler(statesampler.StateSampler):
    """A state sampler whose scoped states follow the metrics container of each bundle."""

    def scoped_state(
        self,
        name_context: Any,
        state_name: str,
        io_target: Any = None,
        metrics_container: Any = None,
    ) -> Any:
        state = super().scoped_state(name_context, state_name, io_target, metrics_container)
        if metrics_container is None or state.metrics_container is metrics_container:
            return state
        stale = [name for name, cached in self._states_by_name.items() if cached is state]
        for name in stale:
            del self._states_by_name[name]
        return super().scoped_state(name_context, state_name, io_target, metrics_container)


# What the streaming executor's worker threads build their samplers from (its `statesampler`).
_PER_BUNDLE_SAMPLERS = SimpleNamespace(
    StateSampler=_PerBundleStateSampler, set_current_tracker=statesampler.set_current_tracker
)


def enable_live_direct_runner() -> None:
    """Makes the streaming DirectRunner run `DirectLiveRead` and count every bundle.

    Installs `DirectLiveRead`'s evaluator in the DirectRunner's evaluator registry, and the
    per-bundle state sampler in its executor, for the rest of the process. A pipeline reads
    both when it starts running. Calling it again changes nothing.
    """
    TransformEvaluatorRegistry._test_evaluators_overrides[DirectLiveRead] = _LiveReadEvaluator
    executor.statesampler = _PER_BUNDLE_SAMPLERS  # type: ignore[assignment]


@contextlib.contextmanager
def live_direct_runner() -> Iterator[None]:
    """`enable_live_direct_runner` while the block runs; Beam as it was after it.

    A pipeline started inside the block keeps what it read at its start to its end.
    """
    overrides = TransformEvaluatorRegistry._test_evaluators_overrides
    evaluator = overrides.get(DirectLiveRead)
    samplers = executor.statesampler
    enable_live_direct_runner()
    try:
        yield
    finally:
        executor.statesampler = samplers
        if evaluator is None:
            overrides.pop(DirectLiveRead, None)
        else:
            overrides[DirectLiveRead] = evaluator
