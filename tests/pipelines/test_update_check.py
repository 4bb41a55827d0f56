"""The offline update check: compatible graphs, a renamed step, a changed coder, lost state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.transforms.userstate import BagStateSpec

from pipelines.catalog import get_pipeline
from pipelines.framework.cli import main
from pipelines.framework.run import build_pipeline
from pipelines.framework.update_check import compare, summarize


class _Remember(beam.DoFn):
    SEEN = BagStateSpec("seen", beam.coders.VarIntCoder())

    def process(self, element: Any, seen: Any = beam.DoFn.StateParam(SEEN)) -> Any:
        seen.add(element[1])
        yield element[1]


def _graph(step: str, kind: type = int, stateful: bool = False) -> dict[str, Any]:
    pipeline = beam.Pipeline()
    keyed = pipeline | "Create" >> beam.Create([("k", 1)])
    if stateful:
        _ = keyed | step >> beam.ParDo(_Remember()).with_output_types(kind)
    else:
        _ = keyed | step >> beam.Map(lambda pair: pair[1]).with_output_types(kind)
    return summarize(pipeline.to_runner_api())


def test_the_same_pipeline_built_twice_is_compatible(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("{}\n")
    argv = [f"--source=file://{tmp_path}/in.jsonl", "--sink=stdout://", "--dead_letter=stdout://",
            "--counts_sink=stdout://"]  # fmt: skip
    spec = get_pipeline("events_to_bigquery")
    old, new = (summarize(build_pipeline(spec, argv)[0].to_runner_api()) for _ in range(2))
    assert "Count read/ParDo(_CountFn)" in old["steps"]
    assert compare(old, new) == []


def test_a_renamed_step_needs_a_mapping() -> None:
    old, new = _graph("Double"), _graph("Twice")
    (problem,) = compare(old, new)
    assert problem.startswith("step 'Double' is gone")
    assert "--transform_name_mappings Double=NEW" in problem
    mappings = {name: name.replace("Double", "Twice") for name in old["steps"]}
    assert compare(old, new, mappings) == []


def test_a_changed_coder_or_lost_state_is_refused() -> None:
    old = _graph("Step")
    assert any("changes its output coder" in p for p in compare(old, _graph("Step", str)))
    stateful = _graph("Step", stateful=True)
    problems = compare(stateful, _graph("Step"))
    assert any("is gone" in p or "changes its state" in p for p in problems)
    removed = {name: "" for name in stateful["steps"] if name.startswith("Step")}
    assert any("cannot be removed" in p for p in compare(stateful, _graph("Other"), removed))


def test_the_command_line_compares_two_summaries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_graph("Double")))
    new.write_text(json.dumps(_graph("Twice")))
    assert main(["update-check", "compare", str(old), str(new)]) == 1
    assert "incompatible: step 'Double' is gone" in capsys.readouterr().out
    argv = ["update-check", "compare", str(old), str(new), "--transform_name_mappings=Double=Twice"]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("compatible")
