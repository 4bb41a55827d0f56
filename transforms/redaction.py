"""Secrets kept out of logs and tracebacks: a logging filter and a process-wide install.

`transforms.io.endpoint.redact` is the one rule for what a secret looks like in text; this
module applies it to every log record that reaches the process's log handlers (the suite's
loggers and the libraries' alike) and to uncaught exceptions' tracebacks.
"""

from __future__ import annotations

import logging
import sys
import traceback
from types import TracebackType

from transforms.io.endpoint import redact

__all__ = ["RedactSecrets", "install_redaction"]

PROJECT_LOGGERS = ("pipelines", "transforms")


class RedactSecrets(logging.Filter):
    """Rewrites a log record's message and traceback with `redact`; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        shown = redact(message)
        if shown != message:
            record.msg, record.args = shown, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def _excepthook(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    text = "".join(traceback.format_exception(kind, error, trace))
    sys.stderr.write(redact(text))


def install_redaction() -> None:
    """Redacts secrets in this process's logs and uncaught tracebacks (idempotent).

    The filter goes on the suite's loggers (records they log) and on the root logger's
    handlers (records of every logger that reach them); call it after configuring logging.
    """
    loggers = [logging.getLogger(name) for name in PROJECT_LOGGERS]
    handlers = logging.getLogger().handlers
    for target in [*loggers, *handlers]:
        if not any(isinstance(each, RedactSecrets) for each in target.filters):
            target.addFilter(RedactSecrets())
    sys.excepthook = _excepthook
