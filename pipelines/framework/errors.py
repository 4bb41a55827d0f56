"""What the command line says about an error: one line naming the culprit and the fix.

`explain` turns any exception a user can cause into ``(exit code, message)``: 2 for a usage
error (an option or argument to change), 1 for a runtime one (a path, credentials, a server).
The traceback is shown only with ``--verbose`` or ``PIPELINES_VERBOSE=1``.
"""

from __future__ import annotations

import os
import re

from pipelines.framework.options import OptionError
from pipelines.framework.templates import TemplateError
from transforms.io.endpoint import EndpointError

__all__ = ["USAGE", "RUNTIME", "VERBOSE_ENV", "RunFailed", "explain", "verbose_requested"]

USAGE = 2
RUNTIME = 1
VERBOSE_ENV = "PIPELINES_VERBOSE"

CREDENTIALS_HINT = (
    "no Google Cloud credentials: run `gcloud auth application-default login` or set "
    "GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
)
# Beam's message for a runner option it needs: "Missing required option: project."
_BEAM_MISSING = re.compile(r"Missing (?:required|GCS path) option: (\w+)")
# Beam wraps a step's error: "IsADirectoryError: [Errno 21] ... [while running 'Read/Lines']"
_BEAM_WRAPPED = re.compile(r"^(?:\w+\.)*(\w+): (.*?)(?: \[while running '([^']*)'\])?$", re.S)


class RunFailed(RuntimeError):
    """A run that stopped on an error of a source, a sink or a step; the message says which."""


def verbose_requested(args: list[str]) -> bool:
    """Whether ``--verbose`` is among ``args`` or ``$PIPELINES_VERBOSE`` is set (not 0)."""
    return "--verbose" in args or os.environ.get(VERBOSE_ENV, "0") not in ("", "0")


def _is(exc: BaseException, name: str) -> bool:
    return any(cls.__name__ == name for cls in type(exc).__mro__)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _runner_options(message: str) -> str:
    flags = sorted({f"--{name}" for name in _BEAM_MISSING.findall(message)})
    return (
        f"the runner needs {', '.join(flags)}: give them on the command line (Dataflow: "
        "--project=P --region=R --temp_location=gs://BUCKET/temp)"
    )


_PATH_FIXES = {
    "FileExistsError": "it is a file where a folder is wanted: name a folder",
    "NotADirectoryError": "a part of it is a file, not a folder: name a folder",
    "IsADirectoryError": "it is a folder where files are wanted: name files (DIR/*.jsonl)",
    "FileNotFoundError": "it does not exist",
    "PermissionError": "permission denied: choose a path you may use",
}


def _path_problem(kind: str, path: str, strerror: str) -> str:
    return f"{path}: {_PATH_FIXES.get(kind, strerror)}"


def _wrapped(message: str) -> str | None:
    """Explains Beam's wrapping of a step's error (``RuntimeError: X: ... [while running S]``)."""
    match = _BEAM_WRAPPED.match(_first_line(message))
    if match is None or not match[3]:
        return None
    kind, text, step = match[1], match[2], match[3]
    path = re.search(r"\[Errno \d+\] ([^:]+): '([^']+)'", text)
    if kind in _PATH_FIXES and path:
        return f"step {step!r}: {_path_problem(kind, path[2], path[1])}"
    if kind == "DefaultCredentialsError":
        return f"step {step!r}: {CREDENTIALS_HINT}"
    return f"step {step!r} failed: {kind}: {text}"


def explain(exc: BaseException) -> tuple[int, str]:
    """Returns the exit code and the one-line message for an error that ended a command.

    Args:
        exc: the exception that reached the command line.

    Returns:
        ``(2, "unknown option --sourc ...")`` for a usage error, ``(1, "...")`` for a runtime
        one; an unexpected error keeps its type and first line and points at ``--verbose``.
    """
    if isinstance(exc, (OptionError, EndpointError, TemplateError)):
        return USAGE, str(exc)
    if isinstance(exc, KeyError):  # get_pipeline's "no pipeline ..."; any key as text
        return USAGE, str(exc.args[0]) if exc.args else "a missing key"
    if isinstance(exc, RunFailed):
        return RUNTIME, str(exc)
    if _is(exc, "DefaultCredentialsError"):
        return RUNTIME, CREDENTIALS_HINT
    if isinstance(exc, OSError) and exc.filename:
        return RUNTIME, _path_problem(type(exc).__name__, exc.filename, exc.strerror or "")
    message = str(exc)
    if isinstance(exc, ValueError) and _BEAM_MISSING.search(message):
        return USAGE, _runner_options(message)
    wrapped = _wrapped(message)
    if wrapped is not None:
        return RUNTIME, wrapped
    if _is(exc, "ServiceError"):
        return RUNTIME, message
    line = _first_line(message) or "(no message)"
    return RUNTIME, f"{type(exc).__name__}: {line} (--verbose shows the traceback)"
