"""Option parsing: unknown options first, durations read by `parse_duration`, one culprit named."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.catalog import CATALOG, get_pipeline
from pipelines.framework.options import (
    Duration,
    Option,
    OptionError,
    duration_option,
    parse_options,
)
from transforms.durations import WRITTEN, parse_duration

SESSIONIZE = get_pipeline("sessionize").options
ENDPOINTS = ("--source=file:///tmp/in.jsonl", "--sink=file:///tmp/out", "--dead_letter=stdout://")
DURATION_OPTIONS = [
    pytest.param(name, option, id=f"{name}--{option.name}")
    for name in sorted(CATALOG)
    for option in get_pipeline(name).options
    if option.duration is not None
]
NOT_DURATIONS = ["abc", "-5m", "30M", "5 hours", "1h30m", "m"]


def parse(options: tuple[Option, ...] | list[Option], *argv: str) -> dict:
    return parse_options("prog", "", options, argv)[0]


# --- unknown options -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "others",
    [(), ("--max_seconds=soon",), ("--gap=abc",), ("--unknown_fields=maybe",)],
    ids=["alone", "with_a_bad_number", "with_a_bad_duration", "with_a_bad_choice"],
)
def test_a_misspelled_required_option_is_unknown_with_its_suggestion(others: tuple) -> None:
    with pytest.raises(OptionError, match=r"unknown option --key_feld: .*did you mean --key_field"):
        parse(SESSIONIZE, *ENDPOINTS, "--key_feld=device", *others)


def test_a_misspelled_option_given_apart_from_its_value_is_unknown() -> None:
    with pytest.raises(OptionError, match=r"unknown option --key_feld: .*did you mean --key_field"):
        parse(SESSIONIZE, *ENDPOINTS, "--key_feld", "device")


def test_a_missing_required_option_is_still_reported(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        parse(SESSIONIZE, *ENDPOINTS, "--runner=DirectRunner")
    assert stop.value.code == 2
    assert "the following arguments are required: --key_field" in capsys.readouterr().err


def test_help_is_not_an_unknown_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        parse(SESSIONIZE, "--help")
    assert stop.value.code == 0
    assert "--key_field KEY_FIELD" in capsys.readouterr().out


def test_beam_options_and_values_pass_through() -> None:
    values, rest = parse_options(
        "prog", "", SESSIONIZE, [*ENDPOINTS, "--key_field=k", "--runner", "DirectRunner"]
    )
    assert values["key_field"] == "k"
    assert rest == ["--runner", "DirectRunner"]


# --- durations -----------------------------------------------------------------------------


def test_every_catalog_duration_option_is_of_the_duration_kind() -> None:
    names = {(name, option.name) for name, option in (case.values for case in DURATION_OPTIONS)}
    assert {("sessionize", "gap"), ("sessionize", "allowed_lateness"), ("sessionize", "early"),
            ("cdc_replicate", "delete_retention")} <= names  # fmt: skip
    for name in CATALOG:
        for option in get_pipeline(name).options:
            assert "ms|s|m" not in (option.regex or ""), f"{name} --{option.name}: a duration regex"


@pytest.mark.parametrize("text", NOT_DURATIONS)
@pytest.mark.parametrize(
    ("pipeline", "option"), DURATION_OPTIONS, ids=lambda x: getattr(x, "name", x)
)
def test_a_bad_duration_says_what_to_write(pipeline: str, option: Option, text: str) -> None:
    with pytest.raises(OptionError) as error:
        parse([option], f"--{option.name}={text}")
    message = str(error.value)
    assert message.startswith(f"--{option.name}"), message
    assert "\\" not in message and "does not match" not in message, message
    if text.startswith("-"):
        assert message == f"--{option.name} must not be negative, got {text!r}"
    else:
        assert "expected a duration such as 60s, 5m or 1h" in message and repr(text) in message


@pytest.mark.parametrize(
    ("pipeline", "option"), DURATION_OPTIONS, ids=lambda x: getattr(x, "name", x)
)
def test_a_duration_option_takes_what_parse_duration_reads(pipeline: str, option: Option) -> None:
    for text in ("30 m", "1.5h", " 90s ", "250ms", "5min", "2d", "45"):
        assert parse([option], f"--{option.name}={text}")[option.name] == text
        parse_duration(text)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--gap=0s",), "--gap must be positive, got '0s'"),
        (("--gap=0",), "--gap must be positive, got '0'"),
        (("--gap=0.0m",), "--gap must be positive, got '0.0m'"),
    ],
)
def test_a_zero_gap_names_only_the_gap(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(OptionError) as error:
        parse(SESSIONIZE, *ENDPOINTS, "--key_field=k", *argv)
    assert str(error.value) == message


def test_zero_lateness_and_early_are_allowed_and_a_zero_retention_is_not() -> None:
    values = parse(SESSIONIZE, *ENDPOINTS, "--key_field=k", "--allowed_lateness=0s", "--early=0s")
    assert (values["allowed_lateness"], values["early"]) == ("0s", "0s")
    cdc = get_pipeline("cdc_replicate").options
    with pytest.raises(OptionError, match=r"^--delete_retention must be positive, got '0s'$"):
        parse(cdc, *ENDPOINTS, "--delete_retention=0s")


def test_a_blank_optional_duration_is_its_default() -> None:
    values = parse(SESSIONIZE, *ENDPOINTS, "--key_field=k", "--gap=", "--early=")
    assert (values["gap"], values["early"]) == ("30m", "")


def test_duration_declarations_are_checked() -> None:
    with pytest.raises(OptionError, match="--window must be positive"):
        duration_option("window", "A window.", "0s", positive=True)
    with pytest.raises(OptionError, match="--window: expected a duration"):
        duration_option("window", "A window.", "soon")
    with pytest.raises(ValueError, match="a duration is text, without regex"):
        Option("window", "A window.", default="1m", regex=".*", duration=Duration())
    assert duration_option("w", "W.", "0s").duration == Duration()
    assert duration_option("w", "W.", "1s", positive=True).duration == Duration(positive=True)


def test_the_template_regex_of_a_duration_is_the_written_form_parse_duration_reads() -> None:
    for case in DURATION_OPTIONS:
        option = case.values[1]
        assert isinstance(option, Option)
        assert option.value_regex == WRITTEN
    for text in ("1", "1.5", "0s", "250ms", "5m", "5min", "2h", "1.25d"):
        assert re.fullmatch(WRITTEN, text)
        parse_duration(text)
    for text in NOT_DURATIONS:
        assert not re.fullmatch(WRITTEN, text)


# --- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        (
            ("--key_feld=device",),
            "error: unknown option --key_feld: neither the pipeline nor Beam declares it "
            "(did you mean --key_field?)",
        ),
        (
            ("--key_field=device", "--gap=abc"),
            "error: --gap: expected a duration such as 60s, 5m or 1h (a number, then one of "
            "ms, s, m, min, h, d), got 'abc'",
        ),
        (("--key_field=device", "--gap=0s"), "error: --gap must be positive, got '0s'"),
    ],
)
def test_the_command_line_prints_one_error_line_and_exits_2(
    extra: tuple[str, ...], line: str, tmp_path: Path
) -> None:
    (tmp_path / "in.jsonl").write_text("{}\n")
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", "sessionize", f"--source=file://{tmp_path}/in.jsonl",
         f"--sink=file://{tmp_path}/sink", f"--dead_letter=file://{tmp_path}/dlq", *extra],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert [text for text in result.stderr.splitlines() if text.startswith("error:")] == [line]
    assert "Traceback" not in result.stderr
