"""Prints the path of the provider file, for a Beam YAML pipeline's ``include``."""

from pipelines.yaml_provider import PROVIDERS

print(PROVIDERS)
