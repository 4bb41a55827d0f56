"""The metric declaration: what counts must be declared, ``describe`` lists it, the balance line."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from xml.etree import ElementTree

import pytest

from pipelines.catalog import CATALOG, get_pipeline
from pipelines.devtools.dashboard_picture import render_svg
from pipelines.framework import monitoring
from pipelines.framework.cli import main
from pipelines.framework.monitoring import BalanceLog, alerts, dashboard
from pipelines.framework.run import run_pipeline
from transforms.metrics import (
    AGGREGATED,
    COMMON,
    DEAD_LETTERED,
    METRICS,
    READ,
    WRITTEN,
    Balance,
    Count,
    ReasonCounters,
    counter,
    declared,
)


def test_counter_names_resolve_to_their_declared_metric():
    assert declared("dead_lettered.invalid_json") is METRICS[DEAD_LETTERED]
    assert declared("written_alerts_high").name == "written_alerts"
    assert declared("written_publish") is METRICS[WRITTEN]
    assert declared("written_dead_letters").name == "written_dead_letters"


@pytest.mark.parametrize(
    "make",
    [lambda: counter("undeclared"), lambda: Count("undeclared"), lambda: ReasonCounters("nope")],
)
def test_counting_an_undeclared_name_fails_naming_the_declaration(make):
    with pytest.raises(KeyError, match="not declared in transforms/metrics.py"):
        make()
    with pytest.raises(KeyError):
        declared("read.reason")  # read has no reasons


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_describe_lists_the_metrics_a_pipeline_reports(name, capsys):
    spec = get_pipeline(name)
    assert main(["describe", name]) == 0
    text = capsys.readouterr().out
    assert main(["describe", name, "--format=json"]) == 0
    document = json.loads(capsys.readouterr().out)
    listed = [metric["name"] for metric in document["metrics"]]
    assert listed == [metric.name for metric in spec.reported]
    assert set(COMMON) | {spec.delivered} <= set(listed)
    section = text[text.index("Metrics (") :]
    for metric in document["metrics"]:
        assert re.search(rf"^  {metric['name']} \(counter, by step", section, re.M), metric
        assert metric["meaning"].split()[0] in section
    assert document["balance"]["accounted"][0] == spec.delivered


def test_every_pipeline_gets_the_whole_alert_set_and_every_metric_on_its_dashboard():
    for name in CATALOG:
        spec = get_pipeline(name)
        assert set(alerts(spec)) == {
            "dead_letters", "balance", "system_lag", "data_watermark_age", "backlog_age",
            "job_not_running",
        }  # fmt: skip
        titles = [tile["widget"]["title"] for tile in dashboard(spec)["mosaicLayout"]["tiles"]]
        for metric in spec.reported:
            assert f"{metric.name} per second, by step" in titles


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_balance_line_says_per_window_whether_the_counters_add_up(caplog):
    clock = _Clock()
    counters = {READ: 10, AGGREGATED: 7, DEAD_LETTERED: 3, "dead_lettered.sink_rejected": 2}
    log = BalanceLog("p", Balance(AGGREGATED), lambda: dict(counters), 60, clock)
    caplog.set_level(logging.INFO, logger="pipelines.framework.monitoring")

    assert log.tick() is None  # no window yet
    clock.now = 60
    first = log.tick()
    # Dead letters of sink failures are rows, not input records: 10 = 7 + 1 + 0 is off by 2.
    assert first == (
        "p balance over 60 s: read +10 = aggregated +7 + dead_lettered +1 + dropped +0; "
        "2 records unaccounted (in flight now; missing if it grows)"
    )
    counters.update({READ: 15, AGGREGATED: 14})
    clock.now = 125
    assert log.tick() == (
        "p balance over 65 s: read +5 = aggregated +7 + dead_lettered +0 + dropped +0; holds"
    )
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]


def test_the_dashboard_picture_draws_every_tile_with_its_title():
    spec = get_pipeline("events_to_bigquery")
    layout = dashboard(spec)
    svg = ElementTree.fromstring(render_svg(layout))
    ns = "{http://www.w3.org/2000/svg}"
    texts = [text.text for text in svg.iter(f"{ns}text")]
    tiles = layout["mosaicLayout"]["tiles"]
    assert len(list(svg.iter(f"{ns}rect"))) == len(tiles) + 1  # and the background
    assert all(tile["widget"]["title"] in texts for tile in tiles)
    assert "counters: dead_lettered" in texts


def test_no_module_counts_beside_the_declaration():
    root = Path(__file__).resolve().parents[2]
    for path in [
        *root.joinpath("transforms").rglob("*.py"),
        *root.joinpath("pipelines").rglob("*.py"),
    ]:
        if path.name != "metrics.py" or path.parent.name != "transforms":
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"Metrics\.(counter|gauge|distribution)\(", text), path


def test_an_endless_run_logs_its_balance_each_window(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(monitoring, "BALANCE_LOG_SECONDS", 1.0)
    caplog.set_level(logging.INFO, logger="pipelines.framework.monitoring")
    report = run_pipeline(
        get_pipeline("events_to_bigquery"),
        ["--source=generator://events?live=true&rate=20", f"--sink=file://{tmp_path}/out",
         f"--dead_letter=file://{tmp_path}/dlq", "--max_seconds=4"],
    )  # fmt: skip
    lines = [r.getMessage() for r in caplog.records if " balance over " in r.getMessage()]
    assert lines, [r.getMessage() for r in caplog.records]
    assert all(line.startswith("events_to_bigquery balance over ") for line in lines)
    assert all(re.search(r"read \+\d+ = written \+\d+ \+ dead_lettered", line) for line in lines)
    assert report.count("read") > 0
