"""Options declared once per pipeline, from which the command line is generated.

The same declaration is meant to generate the template metadata, the README parameter table and
the Terraform variables, so that a parameter cannot drift between them.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["COMMON_OPTIONS", "Option", "OptionError", "build_parser", "parse_options"]


class OptionError(ValueError):
    """An option value that cannot be used; the message says what to change."""


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


@dataclass(frozen=True)
class Option:
    """One pipeline option.

    Attributes:
        name: the option name, ``snake_case`` (``--name`` on the command line).
        help: one sentence for users.
        type: ``str``, ``int``, ``float`` or ``bool``.
        default: the value when not given (``None``: no value).
        required: the option must be given.
        choices: the allowed values, if it is an enum.
        regex: a pattern the whole value must match (checked before the pipeline starts).
        param_type: the Flex Template parameter type (``TEXT``, ``PUBSUB_SUBSCRIPTION``...).
        group: the group it is shown under.

    """

    name: str
    help: str
    type: type = str
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    regex: str | None = None
    param_type: str = "TEXT"
    group: str = "General"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"option name {self.name!r} must be snake_case")
        if self.type not in (str, int, float, bool):
            raise ValueError(f"option {self.name}: type must be str, int, float or bool")
        if self.required and self.default is not None:
            raise ValueError(f"option {self.name}: a required option has no default")
        if self.regex is not None:
            re.compile(self.regex)

    def check(self, value: Any) -> None:
        """Raises `OptionError` if ``value`` breaks the option's regex."""
        if value is None or self.regex is None:
            return
        if not re.fullmatch(self.regex, str(value)):
            raise OptionError(f"--{self.name}={value!r} does not match {self.regex!r}: {self.help}")


COMMON_OPTIONS = (
    Option(
        "source",
        "Where records are read from: generator://, file://, pubsub://projects/P/subscriptions/S.",
        required=True,
        regex=r"[a-z][a-z0-9+.-]*://.*",
        group="Endpoints",
    ),
    Option(
        "sink",
        "Where records are written: file:///dir, bigquery://P:D.T, pubsub://projects/P/topics/T,"
        " stdout://.",
        required=True,
        regex=r"[a-z][a-z0-9+.-]*://.*",
        group="Endpoints",
    ),
    Option(
        "dead_letter",
        "Where records that fail any step are written, with the original bytes and the reason.",
        required=True,
        regex=r"[a-z][a-z0-9+.-]*://.*",
        group="Endpoints",
    ),
    Option(
        "max_seconds",
        "Stop an endless (streaming) run after this many seconds; 0 runs until Ctrl-C.",
        type=float,
        default=0.0,
        param_type="NUMBER",
        group="Run",
    ),
)


def build_parser(prog: str, description: str, options: Sequence[Option]) -> argparse.ArgumentParser:
    """Returns an argparse parser for the declared options (``--name value``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    groups: dict[str, Any] = {}
    for option in options:
        group = groups.get(option.group)
        if group is None:
            group = groups[option.group] = parser.add_argument_group(option.group)
        kwargs: dict[str, Any] = {
            "help": option.help + ("" if option.required else f" (default: {option.default})"),
            "type": _parse_bool if option.type is bool else option.type,
            "default": option.default,
            "required": option.required,
            "metavar": option.name.upper(),
        }
        if option.choices:
            kwargs["choices"] = option.choices
        group.add_argument(f"--{option.name}", **kwargs)
    return parser


def parse_options(
    prog: str, description: str, options: Sequence[Option], argv: Sequence[str]
) -> tuple[dict[str, Any], list[str]]:
    """Parses ``argv`` into the declared options and the rest (Beam's own pipeline options).

    Returns:
        ``({"source": "file:///in.jsonl", ...}, ["--runner=DirectRunner", ...])``.

    Raises:
        SystemExit: argparse's exit on ``--help`` or a missing/invalid option.
        OptionError: a value breaks its option's regex.

    """
    parser = build_parser(prog, description, options)
    namespace, rest = parser.parse_known_args(list(argv))
    values = vars(namespace)
    for option in options:
        option.check(values[option.name])
    return values, rest
