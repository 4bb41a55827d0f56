"""The command line: ``python -m pipelines list | describe | run | demo | template``.

Maintainers' commands (generated docs, the local servers) are `pipelines.devtools`'s.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from pipelines.catalog import CATALOG, get_pipeline
from pipelines.framework import template_cli
from pipelines.framework.demo import dashboard_beside, demo_argv
from pipelines.framework.describe import describe_document, describe_options
from pipelines.framework.errors import USAGE as USAGE_CODE
from pipelines.framework.errors import explain, verbose_requested
from pipelines.framework.options import closest
from pipelines.framework.run import run_pipeline
from transforms.io.endpoint import redact
from transforms.redaction import install_redaction

__all__ = ["main"]

USAGE = """usage: python -m pipelines [--verbose] COMMAND

commands:
  list [--format=json]      the pipelines of the catalog
  describe NAME [--format=json]
                            a pipeline's options, with help and defaults
  run NAME [--option=value ...] [beam options] [--wait]
                            run a pipeline (DirectRunner unless --runner is given); on
                            Dataflow: submit, print the job id, and follow it with --wait
  drain|cancel JOB_ID --project P --region R
                            drain or cancel a Dataflow job
  update-check translate NAME --output=DIR [--option=value ...]
                            write the job and graph Dataflow would get (offline)
  update-check compare OLD NEW [--transform_name_mappings OLD=NEW,...]
                            can a new version update a running job in place (offline)
  demo [--output=DIR] [--count=N] [--no-redis]
                            live per-minute metrics from the built-in generator (see README)
  dashboard [--sink=URI] [--publish=URI] [--host=H] [--port=N] [--rows=N]
                            a metrics_to_redis run's rows and balance, live in a browser
  template build NAME --image IMAGE --bucket gs://B [--output FILE]
                            write a pipeline's Flex Template spec file
  template validate [NAME] [--spec FILE]
                            strictly check a pipeline's template metadata, or a spec file
  template launch NAME --project P --region R --bucket gs://B [--parameters k=v,...]
                  [--environment k=v,...] [--job_name J] [--validate_only]
                            launch a Flex Template on Dataflow (prints the gcloud equivalent)

On a terminal, run shows its progress on standard error (a bar, or a live status line).
An error ends in one line saying what to change (exit 2: usage, 1: runtime); --verbose (or
PIPELINES_VERBOSE=1) also shows the traceback.
"""


def _run(name: str, argv: Sequence[str]) -> int:
    """Runs a pipeline and prints its report; returns the exit code.

    128 + the signal number when Ctrl-C (130) or SIGTERM (143) stopped the run, 1 when a
    finished run is not balanced, else 0.
    """
    try:
        wait = "--wait" in argv
        report = run_pipeline(get_pipeline(name), [a for a in argv if a != "--wait"], wait)
    except KeyboardInterrupt as stop:  # stopped before the run could report (a bounded run)
        signum = int(getattr(stop, "signum", signal.SIGINT))
        print(f"stopped by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum
    print()
    print(report.render())
    if report.stopped_by is not None:
        return 128 + report.stopped_by
    return 0 if report.balanced or report.state != "DONE" else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = verbose_requested(args)
    args = [arg for arg in args if arg != "--verbose"]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:  # a failed bundle's tracebacks: the error line below says what failed
        logging.getLogger("apache_beam.runners.direct.executor").setLevel(logging.CRITICAL)
    install_redaction()
    try:
        return _command(args)
    except Exception as exc:  # every error a user can cause ends in one line
        if verbose:
            traceback.print_exc()
        code, message = explain(exc)
        print(f"error: {redact(message)}", file=sys.stderr)
        return code


def _output_format(rest: list[str]) -> str | None:
    """Removes ``--format=text|json`` (or ``--format json``) from ``rest``; returns the format.

    Returns ``None`` for any other format.
    """
    chosen = "text"
    while any(arg == "--format" or arg.startswith("--format=") for arg in rest):
        at = next(i for i, arg in enumerate(rest) if arg.split("=")[0] == "--format")
        flag = rest.pop(at)
        chosen = flag.partition("=")[2] if "=" in flag else (rest.pop(at) if at < len(rest) else "")
    return chosen if chosen in ("text", "json") else None


def _command(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if args == ["--version"]:
        print(f"pipelines {_version()}")
        return 0
    command, rest = args[0], args[1:]
    if command in ("list", "describe"):
        form = _output_format(rest)
        if form is None:
            print(f"error: {command}: --format is text or json", file=sys.stderr)
            return USAGE_CODE
        if command == "list" and not rest:
            _list(form)
            return 0
        if command == "describe" and len(rest) == 1 and not rest[0].startswith("-"):
            spec = get_pipeline(rest[0])
            text = json.dumps(describe_document(spec), indent=2)
            print(text if form == "json" else describe_options(spec))
            return 0
    if command == "run" and rest and not rest[0].startswith("-"):
        return _run(rest[0], rest[1:])
    if command == "demo":
        argv_demo = demo_argv(rest)
        with dashboard_beside(argv_demo):
            return _run("metrics_to_redis", argv_demo)
    if command == "dashboard":
        from pipelines.dashboard.server import main as dashboard

        return dashboard(rest)
    if command == "template":
        return template_cli.main(rest)
    if command == "update-check":
        from pipelines.framework import update_check

        return update_check.main(rest)
    if command in ("drain", "cancel"):
        from pipelines.framework import managed

        return managed.main(command, rest)
    print(f"error: {_usage_error(command, rest)}", file=sys.stderr)
    print(USAGE, file=sys.stderr)
    return USAGE_CODE


def _list(form: str) -> None:
    """Prints the catalog: one line per pipeline, or a JSON list of {name, summary}."""
    entries = [
        {"name": name, "summary": get_pipeline(name).description.split(". ")[0] + "."}
        for name in sorted(CATALOG)
    ]
    if form == "json":
        print(json.dumps(entries, indent=2))
        return
    for entry in entries:
        print(f"{entry['name']:<24} {entry['summary']}")


_COMMANDS = (
    "list",
    "describe",
    "run",
    "demo",
    "dashboard",
    "template",
    "drain",
    "cancel",
    "update-check",
)
_DEVTOOLS = ("docs", "metadata", "services")


def _version() -> str:
    try:
        return version("beam-streaming-suite")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def _usage_error(command: str, rest: Sequence[str]) -> str:
    """Says in one line what is wrong with a command line that matched no command."""
    if command in ("describe", "run") and (not rest or rest[0].startswith("-")):
        return f"{command} needs a pipeline name first (see: python -m pipelines list)"
    if command in ("list", "describe"):
        hint = " (did you mean --format=json?)" if "--json" in rest else ""
        return f"{command}: unexpected arguments {' '.join(rest)}{hint}"
    if command in _DEVTOOLS:
        return f"{command} is a maintainers' command: python -m pipelines.devtools {command}"
    return f"unknown command {command!r}{closest(command, _COMMANDS)}"
