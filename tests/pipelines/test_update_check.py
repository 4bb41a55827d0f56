"""The offline update check: compatible graphs, a renamed step, a changed coder, lost state;
on the suite's graphs and on Dataflow's translations of them, made offline."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.dataflow.internal.apiclient import DataflowApplicationClient
from apache_beam.transforms import window
from apache_beam.transforms.userstate import BagStateSpec

from pipelines.catalog import get_pipeline
from pipelines.framework.cli import main
from pipelines.framework.dataflow_job import read_graph, translate
from pipelines.framework.options import OptionError
from pipelines.framework.run import build_pipeline
from pipelines.framework.spine import Spine
from pipelines.framework.update_check import compare, load, summarize


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


# Dataflow's own translation, offline: two versions of events_to_bigquery as DataflowRunner
# would submit them (job.json and its staged graph), compared as in CI before a deploy.


def _renamed(pipeline: beam.Pipeline, config: Any) -> None:
    """events_to_bigquery whose main write is labelled "Write events" instead of "Write"."""
    with Spine(pipeline, config.spine) as spine:
        spine.write("Write events", config.sink, spine.read())


def _recoded(pipeline: beam.Pipeline, config: Any) -> None:
    """events_to_bigquery copying its blocks into plain lists before the write: what the write
    receives is then encoded by another coder."""
    with Spine(pipeline, config.spine) as spine:
        lists = spine.read() | "Copy" >> beam.Map(lambda block: list(block))
        spine.write("Write", config.sink, lists)


@pytest.fixture(scope="module")
def translated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The job files of six versions: deployed; the same code with other endpoints and
    per-window counts (a stateful step), through the command line; the write renamed; the
    write's input recoded; counts in windows of 60s and of 5m."""
    root = tmp_path_factory.mktemp("dataflow")
    spec = get_pipeline("events_to_bigquery")

    def argv(n: int) -> list[str]:
        source = f"--source=pubsub://projects/proj-x/subscriptions/events-{n}"
        return [source, f"--sink=file://{root}/out-{n}", f"--dead_letter=file://{root}/dlq-{n}"]

    jobs = {
        "deployed": translate(spec, argv(1), root / "deployed"),
        "renamed": translate(replace(spec, build=_renamed), argv(1), root / "renamed"),
        "recoded": translate(replace(spec, build=_recoded), argv(1), root / "recoded"),
    }
    cli = ["update-check", "translate", "events_to_bigquery", f"--output={root}/other",
           *argv(2), "--event_time_field=ts", f"--counts_sink=file://{root}/counts",
           "--project=proj-x", "--region=europe-west1"]  # fmt: skip
    assert main(cli) == 0
    jobs["other"] = root / "other" / "job.json"
    counts = [*argv(2), f"--counts_sink=file://{root}/counts"]
    for size in ("60s", "5m"):
        jobs[f"counts {size}"] = translate(spec, [*counts, f"--counts_window={size}"],
                                           root / f"counts-{size}")  # fmt: skip
    return jobs


def test_a_translation_is_the_streaming_job_dataflow_would_get(translated: dict[str, Path]) -> None:
    job = json.loads(translated["other"].read_text())
    assert job["type"] == "JOB_TYPE_STREAMING"
    options = job["environment"]["sdkPipelineOptions"]["options"]
    assert (options["project"], options["region"]) == ("proj-x", "europe-west1")
    assert options["pipelineUrl"] == "pipeline.pb"
    beam_client = DataflowApplicationClient(PipelineOptions(["--no_auth"]))
    assert job["environment"]["version"] == {
        "job_type": "FNAPI_STREAMING", "major": beam_client.environment_version
    }  # fmt: skip
    graph = read_graph(translated["other"], job)
    assert {env.urn for env in graph.components.environments.values()} == {"beam:env:docker:v1"}
    steps = load(translated["other"])["steps"]
    assert "Write/Files" in steps and "Write dead letters/Write/Files" in steps


def test_other_endpoints_and_added_steps_are_compatible(translated: dict[str, Path]) -> None:
    assert compare(load(translated["deployed"]), load(translated["other"])) == []


def test_a_stateful_step_is_read_from_the_translation_and_cannot_be_removed(
    translated: dict[str, Path],
) -> None:
    counted, deployed = load(translated["other"]), load(translated["deployed"])
    stateful = [name for name, step in counted["steps"].items() if step["state"]]
    assert stateful and all(name.startswith("Counts/") for name in stateful)
    problems = compare(counted, deployed, {"Counts": "", "Write counts": ""})
    assert problems == [
        f"step {name!r} holds state {counted['steps'][name]['state']}: it cannot be removed"
        for name in stateful
    ]


def test_a_renamed_step_without_a_mapping_is_refused(translated: dict[str, Path]) -> None:
    old, new = load(translated["deployed"]), load(translated["renamed"])
    assert compare(old, new) == [
        "step 'Write' is gone: map it with --transform_name_mappings Write=NEW "
        "(or NEW empty to remove it)"
    ]
    assert compare(old, new, {"Write": "Write events"}) == []


def test_a_changed_coder_is_refused(translated: dict[str, Path]) -> None:
    problems = compare(load(translated["deployed"]), load(translated["recoded"]))
    assert problems
    assert all("changes its output coder" in problem for problem in problems)
    assert any(problem.startswith("step 'Write/Count/") for problem in problems)


def test_changed_windows_are_refused(translated: dict[str, Path]) -> None:
    minute, five = load(translated["counts 60s"]), load(translated["counts 5m"])
    grouped = minute["steps"]["Counts/Aggregate/GroupByKey"]
    assert grouped["windows"] == "fixed(size=60s)"
    assert compare(minute, five) == [
        "step 'Counts/Aggregate/GroupByKey' changes its windows: fixed(size=60s) -> "
        "fixed(size=300s) (what it keeps is kept per window)"
    ]
    # A step that keeps nothing per window has none; a summary of an older version, no field.
    assert minute["steps"]["Write/Files"]["windows"] is None
    older = {"steps": {name: {k: v for k, v in step.items() if k != "windows"}
                       for name, step in minute["steps"].items()}}  # fmt: skip
    assert compare(older, five) == []


def test_a_summary_names_the_windows_of_beams_window_functions() -> None:
    shown = {}
    for label, window_fn in {"fixed": window.FixedWindows(60, 10),
                             "sliding": window.SlidingWindows(300, 60),
                             "sessions": window.Sessions(1800),
                             "global": window.GlobalWindows()}.items():  # fmt: skip
        pipeline = beam.Pipeline()
        _ = (pipeline | beam.Create([("k", 1)]) | beam.WindowInto(window_fn)
             | f"Group {label}" >> beam.GroupByKey())  # fmt: skip
        shown[label] = summarize(pipeline.to_runner_api())["steps"][f"Group {label}"]["windows"]
    assert shown == {"fixed": "fixed(size=60s, offset=10s)",
                     "sliding": "sliding(size=300s, period=60s)",
                     "sessions": "sessions(gap_size=1800s)", "global": "global"}  # fmt: skip


def test_the_command_line_compares_job_files(
    translated: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    deployed, renamed = str(translated["deployed"]), str(translated["renamed"])
    assert main(["update-check", "compare", deployed, renamed]) == 1
    assert "incompatible: step 'Write' is gone" in capsys.readouterr().out
    mapping = "--transform_name_mappings=Write=Write events"
    assert main(["update-check", "compare", deployed, renamed, mapping]) == 0
    assert capsys.readouterr().out.startswith("compatible")


def test_a_job_file_without_its_graph_or_an_update_is_refused(
    translated: dict[str, Path], tmp_path: Path
) -> None:
    alone = tmp_path / "job.json"
    alone.write_text(translated["deployed"].read_text())
    with pytest.raises(ValueError, match=r"pipeline.pb is not beside it: copy it to"):
        load(alone)
    with pytest.raises(OptionError, match="translate without it"):
        translate(get_pipeline("events_to_bigquery"), ["--update"], tmp_path)
    with pytest.raises(OptionError, match="--temp_location=/tmp: Dataflow needs a gs:// folder"):
        translate(get_pipeline("events_to_bigquery"), ["--temp_location=/tmp"], tmp_path)
