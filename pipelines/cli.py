"""The command line: ``python -m pipelines list | describe | run | demo | services | template``."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pipelines import templates
from pipelines.catalog import CATALOG, get_pipeline
from pipelines.demo import demo_argv
from pipelines.options import OptionError, closest
from pipelines.run import describe_options, run_pipeline
from pipelines.templates import TemplateError
from transforms.io.endpoint import EndpointError, redact
from transforms.redaction import install_redaction

__all__ = ["main"]

USAGE = """usage: python -m pipelines COMMAND

commands:
  list                      the pipelines of the catalog
  describe NAME             a pipeline's options, with help and defaults
  run NAME [--option=value ...] [beam options]
                            run a pipeline (DirectRunner unless --runner is given)
  demo [--output=DIR] [--count=N] [--no-redis]
                            live per-minute metrics from the built-in generator (see README)
  docs                      regenerate the README's option tables and runner matrix
  template metadata [--write]
                            check (or rewrite) templates/*/metadata.json from the declarations
  template build NAME --image IMAGE --bucket gs://B [--output FILE]
                            write a pipeline's Flex Template spec file
  template validate [NAME] [--spec FILE]
                            strictly check metadata.json files, or a spec file
  template launch NAME --project P --region R --bucket gs://B [--parameters k=v,...]
                  [--environment k=v,...] [--job_name J] [--validate_only]
                            launch a Flex Template on Dataflow (prints the gcloud equivalent)
  services up|down|status [NAME ...]
                            the real local servers (Pub/Sub, Kafka, Kinesis, BigQuery, Redis)
"""


def _run(name: str, argv: Sequence[str]) -> int:
    """Runs a pipeline and prints its report; returns the exit code.

    128 + the signal number when Ctrl-C (130) or SIGTERM (143) stopped the run, 1 when a
    finished run is not balanced, else 0.
    """
    try:
        report = run_pipeline(get_pipeline(name), argv)
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
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    install_redaction()
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if args == ["--version"]:
        print(f"pipelines {_version()}")
        return 0
    command, rest = args[0], args[1:]
    try:
        if command == "list":
            for name in sorted(CATALOG):
                print(f"{name:<24} {get_pipeline(name).description.split('. ')[0]}.")
            return 0
        if command == "describe" and len(rest) == 1:
            print(describe_options(get_pipeline(rest[0])))
            return 0
        if command == "run" and rest:
            return _run(rest[0], rest[1:])
        if command == "demo":
            return _run("metrics_to_redis", demo_argv(rest))
        if command == "docs" and not rest:
            from pipelines.docs import update_readme

            readme = Path(__file__).resolve().parent.parent / "README.md"
            print("README.md updated" if update_readme(readme) else "README.md is up to date")
            return 0
        if command == "services":
            from pipelines import services

            return services.main(rest)
        if command == "template":
            return templates.main(rest)
    except (OptionError, EndpointError, TemplateError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) else str(exc)
        print(f"error: {redact(message)}", file=sys.stderr)
        return 2
    print(f"error: {_usage_error(command, rest)}", file=sys.stderr)
    print(USAGE, file=sys.stderr)
    return 2


_COMMANDS = ("list", "describe", "run", "demo", "docs", "services", "template")


def _version() -> str:
    try:
        return version("beam-streaming-suite")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def _usage_error(command: str, rest: Sequence[str]) -> str:
    """Says in one line what is wrong with a command line that matched no command."""
    if command in ("describe", "run") and not rest:
        return f"{command} needs a pipeline name (see: python -m pipelines list)"
    if command in ("list", "describe", "docs"):
        return f"{command}: unexpected arguments {' '.join(rest)}"
    return f"unknown command {command!r}{closest(command, _COMMANDS)}"
