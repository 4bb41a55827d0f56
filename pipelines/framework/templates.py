"""Dataflow Flex Templates from the option declarations: metadata, spec file, checks, launch.

Every catalog pipeline is one template; all of them run from the one image of the Dockerfile,
whose entry point (`pipelines.flex_main`) picks the pipeline from the ``pipeline`` parameter
that every template declares as required, with the template's own name as the only value.

- ``templates/NAME/metadata.json`` is generated from ``PIPELINE.options`` (`template_metadata`),
  with the ``streaming`` / ``supports*`` flags from ``PIPELINE.streaming_modes``.
- `build_spec` writes the template spec file in the shape ``gcloud dataflow flex-template
  build`` writes, keeping the streaming flags that gcloud drops.
- `validate_metadata` and `validate_spec` parse strictly with google-cloud-dataflow-client's
  types (unknown keys fail) and add the rules the service does not check until launch.
- `launch` calls ``projects.locations.flexTemplates.launch`` after checking the parameters
  against the metadata; `gcloud_command` is the same launch as a gcloud command.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.catalog import CATALOG, PipelineSpec, get_pipeline
from pipelines.framework.options import ArgumentParser, Option, check_declarations, closest
from transforms.io.endpoint import redact_option

__all__ = [
    "SELECTOR",
    "Launch",
    "TemplateError",
    "build_spec",
    "check_parameters",
    "gcloud_command",
    "launch",
    "main",
    "metadata_text",
    "spec_gcs_path",
    "template_metadata",
    "validate_metadata",
    "validate_spec",
    "write_metadata",
]

SELECTOR = "pipeline"
STREAMING_MODES = ("EXACTLY_ONCE", "AT_LEAST_ONCE")
ROOT = Path(__file__).resolve().parents[2]
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_BUCKET = re.compile(r"gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")
_JOB_NAME = re.compile(r"[a-z]([-a-z0-9]{0,62}[a-z0-9])?")
# Launch environment fields (FlexTemplateRuntimeEnvironment) and their gcloud flags.
ENVIRONMENT_FLAGS = {
    "tempLocation": "--temp-location",
    "stagingLocation": "--staging-location",
    "serviceAccountEmail": "--service-account-email",
    "maxWorkers": "--max-workers",
    "numWorkers": "--num-workers",
    "machineType": "--worker-machine-type",
    "network": "--network",
    "subnetwork": "--subnetwork",
}


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


def metadata_path(name: str, root: Path = ROOT) -> Path:
    """Returns where the metadata of pipeline ``name`` is committed."""
    return root / "templates" / name / "metadata.json"


def write_metadata(root: Path = ROOT) -> list[str]:
    """Regenerates every catalog pipeline's ``metadata.json``; returns the names that changed."""
    changed = []
    for name in sorted(CATALOG):
        path = metadata_path(name, root)
        text = metadata_text(get_pipeline(name))
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    return changed


def _strict_parse(type_name: str, document: Any) -> Any:
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
    _strict_parse("TemplateMetadata", document)
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


def _check_bucket(bucket: str) -> None:
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
    _check_bucket(bucket)
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
    _strict_parse("ContainerSpec", document)
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


@dataclass(frozen=True)
class Launch:
    """One launch of a pipeline's Flex Template, validated at construction.

    Attributes:
        pipeline: the catalog pipeline (the template).
        project: the Google Cloud project.
        region: the Dataflow region, e.g. ``us-central1``.
        bucket: ``gs://BUCKET`` where `build_spec`'s file was uploaded.
        parameters: the pipeline's options, ``{"source": "pubsub://...", ...}``; the
            ``pipeline`` parameter is added.
        job_name: the job's name; by default ``PIPELINE-YYYYMMDD-HHMMSS`` (UTC).
        environment: launch environment fields (keys of `ENVIRONMENT_FLAGS`).
        validate_only: ask the service to validate the launch without starting a job.
        update: replace the running job of the same name in place, keeping its state (a
            streaming job; Dataflow refuses a graph it cannot map onto the running one).
        transform_name_mappings: for an update, ``{old step name: new step name}`` of the
            steps renamed since the running job was launched (a removed step maps to ``""``).
    """

    pipeline: str
    project: str
    region: str
    bucket: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    job_name: str = ""
    environment: Mapping[str, str] = field(default_factory=dict)
    validate_only: bool = False
    update: bool = False
    transform_name_mappings: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_bucket(self.bucket)
        if self.transform_name_mappings and not self.update:
            raise TemplateError("--transform_name_mappings applies to an update: add --update")
        if not self.job_name:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            object.__setattr__(self, "job_name", f"{self.pipeline.replace('_', '-')}-{stamp}")
        if not _JOB_NAME.fullmatch(self.job_name):
            raise TemplateError(f"job name {self.job_name!r}: lowercase letters, digits, '-'")
        unknown = sorted(set(self.environment) - set(ENVIRONMENT_FLAGS))
        if unknown:
            raise TemplateError(
                f"environment {unknown}: supported fields are {', '.join(ENVIRONMENT_FLAGS)}"
            )
        if SELECTOR in self.parameters:
            raise TemplateError(f"{SELECTOR!r} is set by the command: leave it out")
        check_parameters(template_metadata(get_pipeline(self.pipeline)), self.all_parameters)

    @property
    def all_parameters(self) -> dict[str, str]:
        """The parameters sent: the pipeline selector, then the pipeline's options."""
        return {SELECTOR: self.pipeline, **self.parameters}

    @property
    def template_path(self) -> str:
        """The spec file's ``gs://`` path."""
        return spec_gcs_path(self.pipeline, self.bucket)

    def body(self) -> dict[str, Any]:
        """Returns the JSON body of ``flexTemplates:launch``."""
        environment = {
            key: int(value) if key in ("maxWorkers", "numWorkers") else value
            for key, value in self.environment.items()
        }
        return {
            "launchParameter": {
                "jobName": self.job_name,
                "containerSpecGcsPath": self.template_path,
                "parameters": self.all_parameters,
                "environment": environment,
                **({"update": True} if self.update else {}),
                **(
                    {"transformNameMappings": dict(self.transform_name_mappings)}
                    if self.transform_name_mappings
                    else {}
                ),
            },
            "validateOnly": self.validate_only,
        }


def launch(request: Launch, api_endpoint: str | None = None) -> dict[str, Any]:
    """Calls the Dataflow ``flexTemplates.launch`` REST API; returns its response as JSON.

    Args:
        request: the validated launch.
        api_endpoint: another API endpoint; a plain ``http://`` one (a local stub) is called
            without credentials, like the emulators. Default: Dataflow, with the application
            default credentials.
    """
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.dataflow_v1beta3 import FlexTemplatesServiceClient, types

    local = api_endpoint is not None and api_endpoint.startswith("http://")
    client = FlexTemplatesServiceClient(
        transport="rest",
        client_options={"api_endpoint": api_endpoint} if api_endpoint else None,
        credentials=AnonymousCredentials() if local else None,
    )
    document = {"projectId": request.project, "location": request.region, **request.body()}
    message = _strict_parse("LaunchFlexTemplateRequest", document)
    response = client.launch_flex_template(request=message)
    return json.loads(types.LaunchFlexTemplateResponse.to_json(response))


def gcloud_command(request: Launch) -> str:
    """Returns the same launch as a ``gcloud dataflow flex-template run`` command.

    gcloud has no validate-only mode (``--validate-only`` is no flag of ``flex-template run``):
    the command is the same for a validate-only launch, and starts a job.
    Secrets are masked (`transforms.io.endpoint.redact_option`): passwords in URIs and the
    values of secret-named parameters read ``***``; put them back before running it.
    """
    words = [
        "gcloud", "dataflow", "flex-template", "run", request.job_name,
        f"--template-file-gcs-location={request.template_path}",
        f"--project={request.project}", f"--region={request.region}",
    ]  # fmt: skip
    pairs = [f"{key}={redact_option(key, value)}" for key, value in request.all_parameters.items()]
    text = "".join(pairs)
    # gcloud splits on commas unless the list starts with ^DELIMITER^.
    delimiter = next(char for char in ",~;|#@" if char not in text)
    prefix = "" if delimiter == "," else f"^{delimiter}^"
    words.append(f"--parameters={prefix}{delimiter.join(pairs)}")
    words += [
        f"{ENVIRONMENT_FLAGS[key]}={redact_option(key, value)}"
        for key, value in request.environment.items()
    ]
    if request.update:
        words.append("--update")
    if request.transform_name_mappings:
        mappings = ",".join(f"{old}={new}" for old, new in request.transform_name_mappings.items())
        words.append(f"--transform-name-mappings={mappings}")
    return " ".join(shlex.quote(word) for word in words)


def _pairs(text: str) -> dict[str, str]:
    """Parses ``k=v,k2=v2`` (or gcloud's ``^;^k=v;k2=v2`` for values with commas)."""
    delimiter = ","
    match = re.match(r"\^(.)\^", text)
    if match:
        delimiter, text = match[1], text[match.end() :]
    pairs = {}
    for item in filter(None, text.split(delimiter)):
        key, sep, value = item.partition("=")
        if not sep:
            raise TemplateError(f"{item!r}: expected KEY=VALUE")
        pairs[key] = value
    return pairs


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m pipelines template")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    pipelines = ", ".join(sorted(CATALOG))
    metadata = commands.add_parser("metadata", help="write or check templates/*/metadata.json")
    metadata.add_argument("--write", action="store_true", help="rewrite the files")
    build = commands.add_parser("build", help="write a pipeline's template spec file")
    build.add_argument("name", help=f"the catalog pipeline: {pipelines}")
    build.add_argument(
        "--image",
        required=True,
        help="the image built from the Dockerfile, REGION-docker.pkg.dev/PROJECT/REPO/NAME:TAG",
    )
    build.add_argument(
        "--bucket", required=True, help="gs://BUCKET for the spec file, temporary and staging files"
    )
    build.add_argument(
        "--output", type=Path, help="the spec file to write (default: build/templates/NAME.json)"
    )
    validate = commands.add_parser("validate", help="check metadata.json files or a spec")
    validate.add_argument("name", nargs="?", help=f"one pipeline (default: all): {pipelines}")
    validate.add_argument("--spec", type=Path, help="a spec file to check instead")
    run = commands.add_parser("launch", help="launch a pipeline's template on Dataflow")
    run.add_argument("name", help=f"the catalog pipeline: {pipelines}")
    run.add_argument("--project", required=True, help="the Google Cloud project of the job")
    run.add_argument("--region", required=True, help="the Dataflow region, e.g. us-central1")
    run.add_argument("--bucket", required=True, help="gs://BUCKET the spec was uploaded to")
    run.add_argument(
        "--parameters",
        type=_pairs,
        default={},
        help="the pipeline's options, k=v,k2=v2 (^;^k=v;k2=v2 for values with commas)",
    )
    run.add_argument(
        "--environment",
        type=_pairs,
        default={},
        help=f"launch environment, k=v,...: {', '.join(ENVIRONMENT_FLAGS)}",
    )
    run.add_argument(
        "--job_name", default="", help="the job's name (default: PIPELINE-YYYYMMDD-HHMMSS)"
    )
    run.add_argument(
        "--validate_only",
        action="store_true",
        help="ask Dataflow to check the launch without starting a job",
    )
    run.add_argument(
        "--update",
        action="store_true",
        help="replace the running streaming job of the same --job_name in place, keeping its state",
    )
    run.add_argument(
        "--transform_name_mappings",
        type=_pairs,
        default={},
        help="with --update: old=new step names, for steps renamed since the running job started",
    )
    run.add_argument("--api_endpoint", help="another Dataflow API endpoint (tests)")
    return parser


def _validate(name: str | None, spec_file: Path | None) -> str:
    if spec_file is not None:
        validate_spec(json.loads(spec_file.read_text(encoding="utf-8")))
        return f"{spec_file}: valid"
    names = [get_pipeline(name).name] if name else sorted(CATALOG)
    for each in names:
        path = metadata_path(each)
        if not path.exists():
            raise TemplateError(f"{path} is missing: run python -m pipelines template metadata")
        document = json.loads(path.read_text(encoding="utf-8"))
        validate_metadata(document)
        if document != template_metadata(get_pipeline(each)):
            raise TemplateError(f"{path} is stale: run python -m pipelines template metadata")
    return f"valid: {', '.join(names)}"


def main(argv: Sequence[str]) -> int:
    """Runs ``python -m pipelines template metadata|build|validate|launch``; returns the code.

    Raises:
        TemplateError, KeyError: a template, parameter or pipeline name that is not valid.
    """
    args = _parser().parse_args(list(argv))
    if args.command == "metadata":
        if args.write:
            changed = write_metadata()
            print(f"written: {', '.join(changed)}" if changed else "metadata.json files up to date")
            return 0
        print(_validate(None, None))
        return 0
    if args.command == "validate":
        print(_validate(args.name, args.spec))
        return 0
    if args.command == "build":
        document = build_spec(get_pipeline(args.name), args.image, args.bucket)
        validate_spec(document)
        output = args.output or Path("build", "templates", f"{args.name}.json")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {output}; upload it with:")
        print(f"  gcloud storage cp {output} {spec_gcs_path(args.name, args.bucket)}")
        return 0
    request = Launch(
        pipeline=get_pipeline(args.name).name,
        project=args.project,
        region=args.region,
        bucket=args.bucket,
        parameters=args.parameters,
        job_name=args.job_name,
        environment=args.environment,
        validate_only=args.validate_only,
        update=args.update,
        transform_name_mappings=args.transform_name_mappings,
    )
    if request.validate_only:
        print("gcloud has no validate-only mode; this starts the same job with gcloud:")
    else:
        print("same launch with gcloud:")
    print(f"  {gcloud_command(request)}")
    response = launch(request, args.api_endpoint)
    job = response.get("job", {})
    print(f"launched {job.get('name', request.job_name)}: job id {job.get('id', '(none)')}")
    return 0
