"""`run_collector`: the garbage collector's settings for a run, and only for the run."""

from __future__ import annotations

import gc

from pipelines.framework.run import RUN_GC_THRESHOLD, run_collector


def test_a_run_freezes_what_was_alive_and_raises_the_young_threshold_then_restores_both() -> None:
    before = gc.get_threshold()
    with run_collector():
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (max(before[0], RUN_GC_THRESHOLD), *before[1:])
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_the_settings_are_restored_when_the_run_fails() -> None:
    before = gc.get_threshold()
    try:
        with run_collector():
            raise RuntimeError("the run failed")
    except RuntimeError:
        pass
    assert (gc.get_freeze_count(), gc.get_threshold()) == (0, before)
