"""Maintainers' commands, from a checkout: ``python -m pipelines.devtools COMMAND``.

- ``docs``: regenerate the README's option tables and runner matrix (`pipelines.devtools.docs`);
- ``metadata [--write]``: check (or rewrite) ``templates/*/metadata.json``
  (`pipelines.devtools.metadata`);
- ``services up|down|status|env [NAME ...]``: the real local servers
  (`pipelines.devtools.services`); ``eval "$(python -m pipelines.devtools services env)"``
  points clients at the running ones.

Errors end in one line, as on the user's command line (`pipelines.framework.errors`).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

# docs and metadata read the catalog, and so import Beam: their modules are imported by their
# commands only, so that ``services`` starts at once.
from pipelines.devtools import services
from pipelines.framework.options import OptionError, closest

__all__ = ["main"]

USAGE = """usage: python -m pipelines.devtools [--verbose] COMMAND

Maintainers' commands, run from a checkout:
  docs                      regenerate the README's option tables and runner matrix
  metadata [--write]        check (or rewrite) templates/*/metadata.json from the declarations
  services up|down|status|env [NAME ...]
                            the real local servers (Pub/Sub, Kafka, Kinesis, BigQuery, Redis);
                            env prints the export lines that point clients at them:
                            eval "$(python -m pipelines.devtools services env)"
"""

_COMMANDS = ("docs", "metadata", "services")


def _command(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = args[0], args[1:]
    if command == "services":
        return services.main(rest)
    if command == "docs" and not rest:
        from pipelines.devtools.docs import update_readme
        from pipelines.devtools.metadata import ROOT

        readme = ROOT / "README.md"
        if not readme.is_file():
            raise OptionError(f"docs: {readme} not found: run it from a checkout of the project")
        print("README.md updated" if update_readme(readme) else "README.md is up to date")
        return 0
    if command == "metadata" and rest in ([], ["--write"]):
        from pipelines.devtools.metadata import check_metadata, write_metadata

        if rest:
            changed = write_metadata()
            print(f"written: {', '.join(changed)}" if changed else "metadata.json files up to date")
        else:
            print(f"valid and up to date: {', '.join(check_metadata())}")
        return 0
    if command in _COMMANDS:
        raise OptionError(f"{command}: unexpected arguments {' '.join(rest)} (see --help)")
    raise OptionError(f"unknown command {command!r}{closest(command, _COMMANDS)} (see --help)")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs a maintainers' command; returns the exit code (2: usage error, 1: runtime)."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args
    args = [arg for arg in args if arg != "--verbose"]
    try:
        return _command(args)
    except Exception as exc:  # one line, as on the user's command line
        from pipelines.framework.errors import explain, verbose_requested

        if verbose or verbose_requested([]):
            traceback.print_exc()
        code, message = explain(exc)
        print(f"error: {message}", file=sys.stderr)
        return code
