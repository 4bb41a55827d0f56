"""Dataflow Flex Templates from the option declarations: metadata, spec file, checks.

Every catalog pipeline is one template; all of them run from the one image of the Dockerfile,
whose entry point (`pipelines.flex_main`) picks the pipeline from the ``pipeline`` parameter
that every template declares as required, with the template's own name as the only value.

- A template's ``metadata.json`` document is generated from ``PIPELINE.options``
  (`template_metadata`), with the ``streaming`` / ``supports*`` flags from
  ``PIPELINE.streaming_modes``: an installed package needs no file of it. The checkout keeps a
  copy in ``templates/NAME/metadata.json`` for readers (``python -m pipelines.devtools
  metadata --write`` rewrites it).
- `build_spec` writes the template spec file in the shape ``gcloud dataflow flex-template
  build`` writes, keeping the streaming flags that gcloud drops.
- `validate_metadata` and `validate_spec` parse strictly with google-cloud-dataflow-client's
  types (unknown keys fail) and add the rules the service does not check until launch;
  `check_parameters` checks launch parameters against the metadata.

The launch itself is `pipelines.framework.launch`; the ``template`` command
`pipelines.framework.template_cli`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pipelines.catalog import PipelineSpec
from pipelines.framework.options import Option, check_declarations, closest
from transforms.io.endpoint import redact_option

__all__ = [
    "SELECTOR",
    "TemplateError",
    "build_spec",
    "check_bucket",
    "check_parameters",
    "metadata_text",
    "parse_strictly",
    "spec_gcs_path",
    "template_metadata",
    "validate_metadata",
    "validate_spec",
]

SELECTOR = "pipeline"
STREAMING_MODES = ("EXACTLY_ONCE", "AT_LEAST_ONCE")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_BUCKET = re.compile(r"gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")


class TemplateError(ValueError):
    """A template file or launch request that is not valid; the message lists every problem."""


def _parameter(option: Option) -> dict[str, Any]:
    """Returns the metadata of one option, as Dataflow's ``ParameterMetadata`` JSON."""
    entry: dict[str, Any] = {
        "name": option.name,
        "label": option.label,
        "helpText": option.help,
        "isOptional": not option.required,
    }
    pattern = option.value_regex
    if pattern is not None:
        # The service checks regexes even for parameters left blank: blank must pass.
        entry["regexes"] = [f"^(?:{pattern})$" if option.required else f"^(?:{pattern})?$"]
    entry["paramType"] = option.param_type
    default = option.render(option.default)
    if not option.required and default:
        entry["defaultValue"] = default
    if option.choices:
        entry["enumOptions"] = [{"value": choice, "label": choice} for choice in option.choices]
    entry["groupName"] = option.group
    if option.parent_name is not None:
        entry["parentName"] = option.parent_name
        entry["parentTriggerValues"] = list(option.parent_trigger_values)
    return entry


def _selector(name: str) -> dict[str, Any]:
    return {
        "name": SELECTOR,
        "label": "Pipeline",
        "helpText": f"The catalog pipeline the suite's image runs for this template: {name}.",
        "isOptional": False,
        "regexes": [f"^{re.escape(name)}$"],
        "paramType": "TEXT",
        "defaultValue": name,
        "groupName": "Template",
    }


def template_metadata(spec: PipelineSpec) -> dict[str, Any]:
    """Returns the ``metadata.json`` document of a pipeline, generated from its declaration.

    Raises:
        ValueError: the option declarations contradict each other.
    """
    check_declarations(spec.options)
    modes = spec.streaming_modes
    document: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "parameters": [_selector(spec.name)] + [_parameter(option) for option in spec.options],
        "streaming": bool(modes),
        "supportsAtLeastOnce": "AT_LEAST_ONCE" in modes,
        "supportsExactlyOnce": "EXACTLY_ONCE" in modes,
    }
    if len(set(modes)) == len(STREAMING_MODES):
        document["defaultStreamingMode"] = modes[0]
    return document


def metadata_text(spec: PipelineSpec) -> str:
    """Returns ``metadata.json`` as it is committed (two-space indent, final newline)."""
    return json.dumps(template_metadata(spec), indent=2, ensure_ascii=False) + "\n"


def parse_strictly(type_name: str, document: Any) -> Any:
    """Parses JSON into a google-cloud-dataflow-client type; unknown keys fail."""
    from google.cloud.dataflow_v1beta3 import types
    from google.protobuf.json_format import ParseError

    message_type = getattr(types, type_name)
    try:
        return message_type.from_json(json.dumps(document))
    except ParseError as exc:
        raise TemplateError(f"not a valid {type_name}: {exc}") from None


def _regex_problems(param: dict[str, Any]) -> list[str]:
    name, problems = param["name"], []
    default = param.get("defaultValue")
    for pattern in param.get("regexes", []):
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            problems.append(f"{name}: regex {pattern!r} does not compile ({exc})")
            continue
        if param.get("isOptional") and not compiled.search(""):
            problems.append(f"{name}: optional, so its regex must accept a blank value")
        if default is not None and not compiled.search(default):
            problems.append(f"{name}: default {default!r} does not match {pattern!r}")
    return problems


def _value_problems(param: dict[str, Any]) -> list[str]:
    name, problems = param["name"], []
    values = [option["value"] for option in param.get("enumOptions", [])]
    if (param.get("paramType") == "ENUM") != bool(values):
        problems.append(f"{name}: an ENUM parameter, and only one, has enumOptions")
    if len(set(values)) != len(values):
        problems.append(f"{name}: enumOptions values repeat")
    default = param.get("defaultValue")
    if values and default is not None and default not in values:
        problems.append(f"{name}: default {default!r} is not one of {values}")
    if param.get("paramType") == "BOOLEAN" and default not in (None, "true", "false"):
        problems.append(f"{name}: a BOOLEAN default is true or false")
    return problems


def _parent_problems(param: dict[str, Any], by_name: Mapping[str, dict[str, Any]]) -> list[str]:
    name, parent_name = param["name"], param.get("parentName")
    if parent_name is None:
        return [f"{name}: parentTriggerValues without parentName"] * bool(
            param.get("parentTriggerValues")
        )
    parent = by_name.get(parent_name)
    if parent is None or parent_name == name:
        return [f"{name}: parentName {parent_name!r} is not another parameter"]
    allowed = {
        "BOOLEAN": ["true", "false"],
        "ENUM": [option["value"] for option in parent.get("enumOptions", [])],
    }.get(parent.get("paramType", ""))
    return [
        f"{name}: parent {parent_name} is never {value!r}"
        for value in param.get("parentTriggerValues", [])
        if allowed is not None and value not in allowed
    ]


def _streaming_problems(document: dict[str, Any]) -> list[str]:
    streaming = document.get("streaming", False)
    at_least_once = document.get("supportsAtLeastOnce", False)
    exactly_once = document.get("supportsExactlyOnce", False)
    default = document.get("defaultStreamingMode")
    problems = []
    if not streaming and (at_least_once or exactly_once or default):
        problems.append("a batch template (streaming false) declares streaming modes")
    if streaming and not (at_least_once or exactly_once):
        problems.append("a streaming template supports at least one streaming mode")
    if (default is not None) != (at_least_once and exactly_once):
        problems.append("defaultStreamingMode is set exactly when both modes are supported")
    if default is not None and default not in STREAMING_MODES:
        problems.append(f"defaultStreamingMode is one of {list(STREAMING_MODES)}")
    return problems


def validate_metadata(document: dict[str, Any]) -> None:
    """Checks a ``metadata.json`` document strictly.

    Checks: the JSON parse of Dataflow's ``TemplateMetadata`` (unknown keys and enum values
    fail), then unique parameter names, regexes that compile, accept a blank optional value and
    the default, enum options, conditional parents, consistent streaming flags, and the
    ``pipeline`` parameter the suite's image needs.

    Raises:
        TemplateError: listing every problem.
    """
    parse_strictly("TemplateMetadata", document)
    problems = [] if document.get("name") else ["the template has no name"]
    params = document.get("parameters", [])
    by_name: dict[str, dict[str, Any]] = {}
    for param in params:
        name = param.get("name", "")
        if not _NAME.fullmatch(name):
            problems.append(f"parameter name {name!r} is not an identifier")
        if name in by_name:
            problems.append(f"{name}: declared twice")
        by_name[name] = param
        if not param.get("label") or not param.get("helpText"):
            problems.append(f"{name}: label and helpText are required")
    for param in params:
        problems += _regex_problems(param) + _value_problems(param)
        problems += _parent_problems(param, by_name)
    selector = by_name.get(SELECTOR)
    if selector is None or selector.get("isOptional"):
        problems.append(f"the required parameter {SELECTOR!r} is missing: the image needs it")
    problems += _streaming_problems(document)
    if problems:
        raise TemplateError("invalid template metadata:\n  " + "\n  ".join(problems))


def spec_gcs_path(name: str, bucket: str) -> str:
    """Returns where the spec file of pipeline ``name`` lives in ``bucket`` (``gs://B``)."""
    return f"{bucket}/templates/{name}.json"


def check_bucket(bucket: str) -> None:
    """Refuses a bucket that is not ``gs://BUCKET``.

    Raises:
        TemplateError: naming the ``--bucket`` value.
    """
    if not _BUCKET.fullmatch(bucket):
        raise TemplateError(f"--bucket={bucket!r}: expected gs://BUCKET (no folder, no slash)")


def build_spec(spec: PipelineSpec, image: str, bucket: str) -> dict[str, Any]:
    """Returns the template spec file of a pipeline, as ``gcloud ... flex-template build``.

    The one image also runs the workers (``sdkContainerImage``), so workers install nothing
    at start-up; temporary and staging files go under the bucket.

    Args:
        spec: the pipeline.
        image: the image built from the Dockerfile, ``REGION-docker.pkg.dev/P/REPO/NAME:TAG``.
        bucket: ``gs://BUCKET`` holding the spec file, temporary and staging files.

    Raises:
        TemplateError: the image or bucket is not usable.
    """
    check_bucket(bucket)
    if not image or any(char.isspace() for char in image):
        raise TemplateError(f"--image={image!r}: expected an image reference")
    return {
        "defaultEnvironment": {
            "sdkContainerImage": image,
            "stagingLocation": f"{bucket}/staging",
            "tempLocation": f"{bucket}/temp",
        },
        "image": image,
        "metadata": template_metadata(spec),
        "sdkInfo": {"language": "PYTHON"},
    }


def validate_spec(document: dict[str, Any]) -> None:
    """Checks a template spec file strictly: Dataflow's ``ContainerSpec`` and its metadata.

    Raises:
        TemplateError: listing the problems.
    """
    parse_strictly("ContainerSpec", document)
    if not document.get("image"):
        raise TemplateError("the spec has no image")
    if document.get("sdkInfo", {}).get("language") != "PYTHON":
        raise TemplateError("the spec's sdkInfo.language must be PYTHON for this image")
    validate_metadata(document.get("metadata", {}))


def check_parameters(metadata: dict[str, Any], parameters: Mapping[str, str]) -> None:
    """Checks launch parameters against a template's metadata, as the service would.

    Raises:
        TemplateError: unknown or missing parameters, values that break a regex, or a
            conditional parameter set while its parent does not enable it.
    """
    params = {param["name"]: param for param in metadata["parameters"]}
    problems = [
        f"unknown parameter {name!r}{closest(name, sorted(params))};"
        f" the template has: {', '.join(sorted(params))}"
        for name in parameters
        if name not in params
    ]
    for name, param in params.items():
        value = parameters.get(name)
        if value is None:
            if not param.get("isOptional"):
                problems.append(f"missing required parameter {name!r}: {param['helpText']}")
            continue
        problems += [
            f"{name}={redact_option(name, value)!r} does not match {pattern!r}"
            for pattern in param.get("regexes", [])
            if not re.search(pattern, value)
        ]
        parent = param.get("parentName")
        if parent is not None and value:
            triggers = param.get("parentTriggerValues") or []
            parent_value = parameters.get(parent, params[parent].get("defaultValue", ""))
            if (parent_value not in triggers) if triggers else not parent_value:
                wanted = " or ".join(triggers) or "set"
                problems.append(f"{name} applies only when {parent} is {wanted}")
    if problems:
        raise TemplateError("invalid launch parameters:\n  " + "\n  ".join(problems))
