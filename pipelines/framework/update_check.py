"""Offline check that a new version of a pipeline can update its running streaming job in place.

Dataflow updates a running job (``template launch --update``) only when the new graph maps onto
the old one: every step of the old job is found in the new graph by name (or through a transform
name mapping), the elements in flight and in state keep their encoding, a step that holds
state or timers keeps them, and a step that keeps elements or state per window (a GroupByKey, a
ParDo with state or timers) keeps the windows of its input (its windowing strategy's window
function: their kind, size, period, gap). `summarize` reads a pipeline's graph (Beam's runner API
proto: the graph Dataflow receives, or ``pipeline.to_runner_api()``) into a small JSON document,
one entry per primitive step, ``windows`` null for a step that keeps nothing per window::

    {"steps": {"Write/Publish": {"outputs": ["beam:coder:bytes:v1"], "state": [],
                                 "windows": null},
               "Dedup/Keep first": {"outputs": ["..."], "state": ["seen"], "windows": "global"},
               "Counts/Group": {"outputs": ["..."], "state": [], "windows": "fixed(size=60s)"}}}

`compare` lists what breaks the update, e.g. ``step 'Parse' is gone: map it with
--transform_name_mappings Parse=NEW``, ``step 'Write' changes its output coder`` or ``step
'Counts/Group' changes its windows: fixed(size=60s) -> fixed(size=300s)``; an empty list means
compatible (a summary without ``windows``, from an older version, is not checked for them). A
mapping maps a name and every step inside it (``Write=Write rows`` maps ``Write/Files`` to
``Write rows/Files``), as Dataflow maps name prefixes.

Run it in CI on the deployed version and the new one, each translated as Dataflow translates it
(`pipelines.framework.dataflow_job`: offline, no credentials), or on summaries::

    python -m pipelines update-check translate NAME --output=new/ --source=... --sink=...
    python -m pipelines update-check compare deployed/job.json new/job.json \
        [--transform_name_mappings OLD=NEW,...]     # exit 1 and one line per problem
    python -m pipelines update-check graph NAME --source=... > new.json   # the suite's own graph
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2, standard_window_fns_pb2

from pipelines.framework.dataflow_job import read_graph
from pipelines.framework.options import OptionError

__all__ = ["compare", "load", "main", "summarize"]

_PARDO = common_urns.primitives.PAR_DO.urn
_GROUP_BY_KEY = common_urns.primitives.GROUP_BY_KEY.urn
# The window functions Beam defines: their name in a summary, and their payload's type.
_WINDOW_FNS: dict[str, tuple[str, Any]] = {
    common_urns.global_windows.urn: ("global", None),
    common_urns.fixed_windows.urn: ("fixed", standard_window_fns_pb2.FixedWindowsPayload),
    common_urns.sliding_windows.urn: ("sliding", standard_window_fns_pb2.SlidingWindowsPayload),
    common_urns.session_windows.urn: ("sessions", standard_window_fns_pb2.SessionWindowsPayload),
}


def _coder(coders: Mapping[str, Any], coder_id: str) -> str:
    """A coder as text: its URN, a hash of its payload, then its components'."""
    coder = coders[coder_id]
    text = coder.spec.urn
    if coder.spec.payload:
        text += "#" + hashlib.sha256(coder.spec.payload).hexdigest()[:12]
    parts = [_coder(coders, component) for component in coder.component_coder_ids]
    return f"{text}({', '.join(parts)})" if parts else text


def _state(transform: Any) -> list[str]:
    if transform.spec.urn != _PARDO:
        return []
    payload = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
    return sorted([*payload.state_specs, *payload.timer_family_specs])


def _window_fn(spec: Any) -> str:
    """A window function as text.

    ``fixed(size=60s)``, ``sliding(size=300s, period=60s)``, ``sessions(gap_size=1800s)``,
    ``global``; another one is its URN and a hash of its payload.
    """
    name, payload_type = _WINDOW_FNS.get(spec.urn, (None, None))
    if name is None:
        return f"{spec.urn}#{hashlib.sha256(spec.payload).hexdigest()[:12]}"
    if payload_type is None:
        return name
    payload = payload_type.FromString(spec.payload)
    parts = []
    for field in payload.DESCRIPTOR.fields:
        value = getattr(payload, field.name)
        seconds = value.seconds + value.nanos / 1e9
        if field.name != "offset" or seconds:
            parts.append(f"{field.name}={seconds:g}s")
    return f"{name}({', '.join(parts)})"


def _windows(components: Any, transform: Any) -> str | None:
    """The window function of the main input of a step that keeps elements or state per window.

    That is a GroupByKey or a ParDo with state or timers; None for another step.
    """
    if transform.spec.urn == _PARDO and _state(transform):
        side = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload).side_inputs
    elif transform.spec.urn == _GROUP_BY_KEY:
        side = {}
    else:
        return None
    (pcoll,) = [pcoll for tag, pcoll in transform.inputs.items() if tag not in side]
    strategy_id = components.pcollections[pcoll].windowing_strategy_id
    return _window_fn(components.windowing_strategies[strategy_id].window_fn)


def summarize(proto: beam_runner_api_pb2.Pipeline) -> dict[str, Any]:
    """Returns the summary of a pipeline graph (see the module): its primitive steps by name."""
    components = proto.components
    steps = {}
    for transform in components.transforms.values():
        if transform.subtransforms or not transform.unique_name:
            continue
        outputs = [
            _coder(components.coders, components.pcollections[pcoll].coder_id)
            for _, pcoll in sorted(transform.outputs.items())
        ]
        steps[transform.unique_name] = {
            "outputs": outputs,
            "state": _state(transform),
            "windows": _windows(components, transform),
        }
    return {"steps": dict(sorted(steps.items()))}


def load(path: Path) -> dict[str, Any]:
    """Reads the summary of a graph from a summary file or from a Dataflow job file.

    Raises:
        OptionError: the file is neither, or a job file's graph is not beside it.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise OptionError(f"{path}: {error}") from None
    if isinstance(document, dict) and isinstance(document.get("steps"), dict):
        return document
    if isinstance(document, dict) and isinstance(document.get("environment"), dict):
        return summarize(read_graph(path, document))
    raise OptionError(
        f"{path}: neither a summary (update-check graph) nor a Dataflow job file "
        "(update-check translate)"
    )


def _renamed(name: str, mappings: Mapping[str, str]) -> str:
    """The name a step of the old graph has in the new one; ``""`` when it is removed."""
    for old in sorted(mappings, key=len, reverse=True):
        if name == old or name.startswith(old + "/"):
            new = mappings[old]
            return new + name[len(old) :] if new else ""
    return name


def _outermost_gone(name: str, steps: Mapping[str, Any]) -> str:
    """The outermost name around a step that no step of ``steps`` has (one mapping for all).

    ``Write`` for ``Write/Files`` when the new graph has no step under ``Write/`` any more.
    """
    parts = name.split("/")
    for end in range(1, len(parts)):
        prefix = "/".join(parts[:end])
        if not any(step.startswith(prefix + "/") for step in steps):
            return prefix
    return name


def compare(
    old: Mapping[str, Any], new: Mapping[str, Any], mappings: Mapping[str, str] | None = None
) -> list[str]:
    """Lists what keeps the ``new`` graph from updating a job running the ``old`` one.

    Args:
        old: the summary of the running job's graph.
        new: the summary of the new version's graph.
        mappings: ``{old name: new name}``, as passed to the update: each maps a step and the
            steps inside it; a name mapped to ``""`` is removed on purpose (it must hold no
            state).

    Returns:
        One sentence per problem; empty when the update is compatible.
    """
    mappings = mappings or {}
    before, after = old["steps"], new["steps"]
    problems = []
    for name, step in before.items():
        target = _renamed(name, mappings)
        if target == "":
            if step["state"]:
                problems.append(f"step {name!r} holds state {step['state']}: it cannot be removed")
            continue
        found = after.get(target)
        if found is None:
            gone = _outermost_gone(name, after) if target == name else name
            problem = (f"step {gone!r} is gone: map it with --transform_name_mappings "
                       f"{gone}=NEW (or NEW empty to remove it)")  # fmt: skip
            if problem not in problems:
                problems.append(problem)
            continue
        if found["outputs"] != step["outputs"]:
            problems.append(f"step {name!r} changes its output coder: {step['outputs']} -> "
                            f"{found['outputs']}")  # fmt: skip
        if found["state"] != step["state"]:
            problems.append(f"step {name!r} changes its state: {step['state']} -> "
                            f"{found['state']}")  # fmt: skip
        if "windows" in step and "windows" in found and found["windows"] != step["windows"]:
            problems.append(f"step {name!r} changes its windows: {step['windows']} -> "
                            f"{found['windows']} (what it keeps is kept per window)")  # fmt: skip
    return problems


def main(argv: Sequence[str]) -> int:
    """``translate``, ``graph`` or ``compare`` (see the module); returns the exit code."""
    from pipelines.catalog import get_pipeline
    from pipelines.framework.dataflow_job import translate
    from pipelines.framework.options import ArgumentParser
    from pipelines.framework.run import build_pipeline
    from pipelines.framework.template_cli import _pairs

    parser = ArgumentParser(prog="python -m pipelines update-check")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    job = commands.add_parser(
        "translate", help="write the job and graph Dataflow would get, offline (job.json)"
    )
    job.add_argument("name", help="the catalog pipeline")
    job.add_argument("--output", type=Path, required=True, help="the folder to write them to")
    graph = commands.add_parser("graph", help="print the summary of the suite's graph (JSON)")
    graph.add_argument("name", help="the catalog pipeline")
    check = commands.add_parser("compare", help="can NEW update a job running OLD?")
    check.add_argument("old", type=Path, help="the running version: a job file or a summary")
    check.add_argument("new", type=Path, help="the new version: a job file or a summary")
    check.add_argument("--transform_name_mappings", type=_pairs, default={}, help="OLD=NEW,...")
    args, rest = parser.parse_known_args(list(argv))
    if args.command == "translate":
        print(translate(get_pipeline(args.name), rest, args.output))
        return 0
    if args.command == "graph":
        pipeline, _ = build_pipeline(get_pipeline(args.name), rest)
        print(json.dumps(summarize(pipeline.to_runner_api()), indent=1))
        return 0
    if rest:
        parser.error(f"unexpected arguments: {' '.join(rest)}")
    problems = compare(load(args.old), load(args.new), args.transform_name_mappings)
    for problem in problems:
        print(f"incompatible: {problem}")
    if not problems:
        print("compatible: the new graph can update the running job in place")
    return 1 if problems else 0
