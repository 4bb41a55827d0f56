"""Options declared once per pipeline, from which the command line is generated.

The same declaration generates the Flex Template metadata (`pipelines.framework.templates`), the
README parameter table (`pipelines.devtools.docs`) and the Terraform variables, so that a parameter
cannot drift between them. An option may depend on a parent option (``parent_name``): it is shown,
and may be set, only when the parent has one of ``parent_trigger_values`` (any non-empty value when
there
are none), the rule Dataflow applies to conditional template parameters.
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from transforms.durations import WRITTEN, Duration
from transforms.io.endpoint import redact_option

__all__ = [
    "BEAM_PASS_THROUGH",
    "COMMON_OPTIONS",
    "ArgumentParser",
    "Duration",
    "Option",
    "OptionError",
    "beam_option_strings",
    "build_parser",
    "closest",
    "check_declarations",
    "duration_option",
    "option_group",
    "parse_options",
]

# The template parameter type an option's Python type implies (TEXT otherwise).
_TYPE_PARAM = {bool: "BOOLEAN", int: "NUMBER", float: "NUMBER"}
# What a number looks like, for the template's launch-time check of number options.
_TYPE_REGEX = {int: r"-?[0-9]+", float: r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?"}


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
        duration: the value is a duration (``Duration()``, or ``Duration(positive=True)``
            to refuse zero), checked by `transforms.durations.parse_duration` before the
            pipeline starts; it stays text.
        param_type: the Flex Template parameter type; by default ``ENUM`` for choices,
            ``BOOLEAN`` or ``NUMBER`` for those types, ``TEXT`` otherwise.
        group: the group it is shown under.
        label: the short title shown in the Dataflow console; by default made from the name.
        parent_name: the option this one depends on: it is shown, and may be set, only when
            the parent has one of ``parent_trigger_values``.
        parent_trigger_values: the parent values that enable this option; empty: any
            non-empty value.
        sink: the value names where records are written: a sink URI (``bigquery://P:D.T``),
            or ``NAME=URI`` pairs of them; ``describe`` lists such options among the sinks.

    """

    name: str
    help: str
    type: type = str
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    regex: str | None = None
    duration: Duration | None = None
    param_type: str = ""
    group: str = "General"
    label: str = ""
    parent_name: str | None = None
    parent_trigger_values: tuple[str, ...] = ()
    sink: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"option name {self.name!r} must be snake_case")
        if self.type not in (str, int, float, bool):
            raise ValueError(f"option {self.name}: type must be str, int, float or bool")
        if self.required and self.default is not None:
            raise ValueError(f"option {self.name}: a required option has no default")
        if self.regex is not None:
            re.compile(self.regex)
        if self.duration is not None:
            if self.type is not str or self.regex is not None or self.choices:
                raise ValueError(
                    f"option {self.name}: a duration is text, without regex or choices"
                )
            self.check(self.default)
        implied = "ENUM" if self.choices else _TYPE_PARAM.get(self.type, "TEXT")
        if not self.param_type:
            object.__setattr__(self, "param_type", implied)
        elif implied != "TEXT" and self.param_type != implied:
            raise ValueError(f"option {self.name}: its values make it {implied}")
        if not self.label:
            object.__setattr__(self, "label", self.name.replace("_", " ").capitalize())
        if self.parent_trigger_values and self.parent_name is None:
            raise ValueError(f"option {self.name}: trigger values need a parent_name")
        if self.parent_name == self.name:
            raise ValueError(f"option {self.name}: an option cannot be its own parent")

    def check(self, value: Any) -> None:
        """Raises `OptionError` if ``value`` is not of its duration kind or breaks its regex.

        A blank value of an optional option means unset, and passes.
        """
        if value is None or (value == "" and not self.required):
            return
        if self.duration is not None:
            try:
                self.duration.seconds(str(value), f"--{self.name}")
            except ValueError as error:
                raise OptionError(str(error)) from None
        elif self.regex is not None and not re.fullmatch(self.regex, str(value)):
            shown = redact_option(self.name, str(value))
            raise OptionError(
                f"--{self.name}={shown!r} does not match the pattern {self.regex}: {self.help}"
            )

    @property
    def value_regex(self) -> str | None:
        """The pattern a given value matches: the declared regex, the choices or the type's."""
        if self.regex is not None:
            return self.regex
        if self.duration is not None:
            return WRITTEN  # a form's check; the command line also takes spaces (``30 m``)
        if self.choices:
            return "|".join(re.escape(choice) for choice in self.choices)
        return _TYPE_REGEX.get(self.type)

    def render(self, value: Any) -> str:
        """Returns ``value`` as it is written on a command line (``true``, ``60s``, ``0.5``)."""
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)

    def triggered_by(self, parent_value: Any) -> bool:
        """Whether the parent's value enables this option."""
        text = self.render(parent_value)
        return text in self.parent_trigger_values if self.parent_trigger_values else text != ""


def duration_option(name: str, help: str, default: str, positive: bool = False) -> Option:
    """Returns an option whose value is a duration (``60s``, ``5m``); ``positive``: not zero."""
    return Option(name, help, default=default, duration=Duration(positive=positive))


def option_group(group: str, *options: Option) -> tuple[Option, ...]:
    """Returns ``options`` shown under ``group``, in order (for a pipeline's ``OPTIONS``)."""
    return tuple(replace(option, group=group) for option in options)


def check_declarations(options: Sequence[Option]) -> None:
    """Checks a pipeline's options together: unique names, parents that exist and can trigger.

    Raises:
        ValueError: a declaration to fix, naming the option.

    """
    by_name: dict[str, Option] = {}
    for option in options:
        if option.name in by_name:
            raise ValueError(f"option {option.name} is declared twice")
        by_name[option.name] = option
    for option in options:
        if option.parent_name is None:
            continue
        parent = by_name.get(option.parent_name)
        if parent is None:
            raise ValueError(f"option {option.name}: no parent option {option.parent_name}")
        allowed = {"BOOLEAN": ("true", "false"), "ENUM": parent.choices}.get(parent.param_type)
        for value in option.parent_trigger_values:
            if allowed is not None and value not in allowed:
                raise ValueError(
                    f"option {option.name}: --{parent.name} is never {value!r}; "
                    f"it is one of {list(allowed)}"
                )


COMMON_OPTIONS = (
    Option(
        "source",
        "Where records are read from: generator://, file://, pubsub://projects/P/subscriptions/S,"
        " kafka://HOST:PORT/TOPIC, kinesis://STREAM.",
        required=True,
        regex=r"[a-z][a-z0-9+.-]*://.*",
        group="Endpoints",
    ),
    Option(
        "sink",
        "Where records are written: file:///dir, bigquery://P:D.T, redis://HOST:PORT/DB,"
        " pubsub://projects/P/topics/T, kafka://HOST:PORT/TOPIC, kinesis://STREAM, stdout://.",
        required=True,
        regex=r"[a-z][a-z0-9+.-]*://.*",
        group="Endpoints",
        sink=True,
    ),
    Option(
        "dead_letter",
        "Where records that fail any step are written, with the original bytes and the reason.",
        required=True,
        regex=r"[a-z][a-z0-9+.-]*://.*",
        group="Endpoints",
        sink=True,
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


BEAM_PASS_THROUGH = (
    "Any option Beam's PipelineOptions declare passes through to Beam unchanged, e.g. "
    "--runner=DataflowRunner, --project=P, --region=R, --temp_location=gs://B/temp, "
    "--streaming, --max_num_workers=N. An option neither the pipeline nor Beam declares fails, "
    "with the closest known one suggested; abbreviations are refused."
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that refuses abbreviations and says what is wrong in one line, then the usage.

    An error exits with code 2 and ``error: PROG: MESSAGE`` as the first line.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> Any:
        """Exits with code 2 after ``error: PROG: MESSAGE`` and the usage."""
        self.exit(2, f"error: {self.prog}: {message}\n{self.format_usage()}")


def _converter(option: Option) -> Any:
    """Returns the argparse type of ``option``; an empty optional value means its default.

    (Template launchers and forms send empty strings for parameters left blank.)
    """
    convert = _parse_bool if option.type is bool else option.type

    def parse(text: str) -> Any:
        if text == "" and not option.required:
            return option.default
        return convert(text)

    parse.__name__ = option.type.__name__  # argparse names the type in its messages
    return parse


def build_parser(prog: str, description: str, options: Sequence[Option]) -> argparse.ArgumentParser:
    """Returns an argparse parser for the declared options (``--name value``)."""
    parser = ArgumentParser(prog=prog, description=description)
    groups: dict[str, Any] = {}
    for option in options:
        group = groups.get(option.group)
        if group is None:
            group = groups[option.group] = parser.add_argument_group(option.group)
        default = redact_option(option.name, option.render(option.default))
        kwargs: dict[str, Any] = {
            "help": option.help + (f" (default: {default})" if default else ""),
            "type": _converter(option),
            "default": option.default,
            "required": option.required,
            "metavar": option.name.upper(),
        }
        if option.choices:
            kwargs["choices"] = option.choices
        group.add_argument(f"--{option.name}", **kwargs)
    parser.add_argument_group("Beam pipeline options (passed through)", BEAM_PASS_THROUGH)
    return parser


def closest(name: str, known: Sequence[str]) -> str:
    """Returns `` (did you mean X?)`` for the known name closest to ``name``, or ``""``."""
    matches = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {matches[0]}?)" if matches else ""


def beam_option_strings() -> frozenset[str]:
    """The flags Beam's registered `PipelineOptions` subclasses declare (``--runner``...)."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    parser = _BeamArgumentParser(add_help=False, allow_abbrev=False)  # as get_all_options does
    seen: dict[str, type] = {}
    stack = list(PipelineOptions.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        try:
            cls._add_argparse_args(parser)
        except argparse.ArgumentError:  # a flag two subclasses both declare
            continue
    return frozenset(s for s in parser._option_string_actions if s.startswith("--"))


def _words_left(options: Sequence[Option], argv: Sequence[str]) -> list[str] | None:
    """Returns the words of ``argv`` the declared options leave, or ``None`` if it is malformed.

    Nothing is required, converted or checked here, so that an unknown option (a misspelled
    required one, most often) is reported before what argparse checks: a missing required
    option, a value of the wrong type.
    """
    probe = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    for option in options:
        probe.add_argument(f"--{option.name}")
    try:
        return probe.parse_known_args(list(argv))[1]
    except argparse.ArgumentError:  # a flag without its value: the real parse says so
        return None


def _check_unknown(options: Sequence[Option], rest: Sequence[str]) -> None:
    beam = beam_option_strings()
    known = [f"--{option.name}" for option in options] + sorted(beam)
    for word in rest:
        flag = word.split("=", 1)[0]
        if not flag.startswith("--") or flag in beam or flag == "--help":
            continue
        hint = closest(flag, known)
        raise OptionError(f"unknown option {flag}: neither the pipeline nor Beam declares it{hint}")


def _check_parents(options: Sequence[Option], values: dict[str, Any]) -> None:
    for option in options:
        if option.parent_name is None or values[option.name] == option.default:
            continue
        if not option.triggered_by(values[option.parent_name]):
            wanted = " or ".join(option.parent_trigger_values) or "set"
            raise OptionError(
                f"--{option.name} applies only when --{option.parent_name} is {wanted}"
            )


def parse_options(
    prog: str, description: str, options: Sequence[Option], argv: Sequence[str]
) -> tuple[dict[str, Any], list[str]]:
    """Parses ``argv`` into the declared options and the rest (Beam's own pipeline options).

    Returns:
        ``({"source": "file:///in.jsonl", ...}, ["--runner=DirectRunner", ...])``.

    Raises:
        SystemExit: argparse's exit on ``--help`` or a missing/invalid option.
        OptionError: an option neither the pipeline nor Beam declares (the message suggests
            the closest known one; checked first), a value is not a duration of its option's
            kind or breaks its regex, or is set while its parent option does not enable it.

    """
    parser = build_parser(prog, description, options)
    left = _words_left(options, argv)
    if left is not None:
        _check_unknown(options, left)
    namespace, rest = parser.parse_known_args(list(argv))
    if left is None:
        _check_unknown(options, rest)
    values = vars(namespace)
    for option in options:
        option.check(values[option.name])
    _check_parents(options, values)
    return values, rest
