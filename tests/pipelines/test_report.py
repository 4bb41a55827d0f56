"""The run report's balance line, and the one line that says why a run failed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipelines.catalog import get_pipeline
from pipelines.framework.report import RunReport
from pipelines.framework.run import _failed


def test_the_balance_line_gives_its_figures() -> None:
    counters = {"read": 10, "written": 8, "dead_lettered": 2, "dead_lettered.schema": 2}
    report = RunReport("events_to_bigquery", "DONE", counters)
    assert report.render().splitlines()[-1] == (
        "  read 10 = written 8 + dead_lettered 2 + dropped 0: balanced"
    )


def test_dead_letters_of_copies_are_shown_beside_the_balance() -> None:
    # A rule that failed on a record that was also enriched and written: its dead letter is
    # not an input record's, so the balance leaves it out and the line says so.
    counters = {"read": 10, "enriched": 7, "written": 7, "dropped": 1, "dropped.duplicate": 1,
                "dead_lettered": 3, "dead_lettered.rule_error": 1,
                "dead_lettered.missing_reference": 1, "dead_lettered.wrong_type": 1}  # fmt: skip
    report = RunReport("enrich_and_alert", "DONE", counters, delivered="enriched")
    assert report.balanced
    assert report.render().splitlines()[-1] == (
        "  read 10 = enriched 7 + dead_lettered (input) 2 + dropped 1: balanced; "
        "1 more dead letters of rows or copies (sink_*, rule_error)"
    )


def test_an_unbalanced_run_says_so_with_the_figures() -> None:
    counters = {"read": 10, "written": 4}
    line = RunReport("events_to_bigquery", "CANCELLED", counters).render().splitlines()[-1]
    assert line.startswith("  read 10 = written 4 + dead_lettered 0 + dropped 0: NOT balanced")


def test_records_split_in_two_are_added_to_the_read_side() -> None:
    counters = {"read": 3, "cdc_key_changes": 1, "applied": 4}
    report = RunReport("cdc_replicate", "DONE", counters, delivered="applied",
                       splits="cdc_key_changes")  # fmt: skip
    assert report.render().splitlines()[-1] == (
        "  read 3 + cdc_key_changes 1 = applied 4 + dead_lettered (input) 0 + dropped 0: balanced"
    )


def _config(*schemes: str) -> SimpleNamespace:
    """What `_failed` reads of a config: the schemes of its source, sink and dead letters."""
    source, sink, dead = (SimpleNamespace(endpoint=SimpleNamespace(scheme=s)) for s in schemes)
    return SimpleNamespace(source=source, sink=sink, dead_letter=dead)


def test_a_failed_run_points_at_the_servers_only_when_one_did_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085")
    spec = get_pipeline("events_to_bigquery")
    config = _config("pubsub", "file", "file")
    down = _failed(spec, config, ConnectionError("failed to connect to all addresses"))
    assert "is the server at PUBSUB_EMULATOR_HOST=127.0.0.1:8085 up?" in str(down)
    missing = _failed(spec, config, ValueError("404 Subscription does not exist"))
    assert "Subscription does not exist" in str(missing) and "server" not in str(missing)
    denied = _failed(spec, config, PermissionError(13, "Permission denied", "/out/.part.tmp"))
    assert "PUBSUB_EMULATOR_HOST" not in str(denied)
