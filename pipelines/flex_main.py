"""The Flex Template entry point of the suite's image (``FLEX_TEMPLATE_PYTHON_PY_FILE``).

Dataflow's Python launcher runs this file with the template's parameters as ``--name=value``
and the launch environment as Beam options (``--runner``, ``--project``, ``--region``,
``--temp_location``, ``--sdk_container_image``...). The ``--pipeline`` parameter, which every
template of the suite requires (see `pipelines.framework.templates`), picks the catalog pipeline;
the rest are that pipeline's options and Beam's. The pipeline is built, validated and submitted; the
launcher does not wait for the job.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pipelines.catalog import get_pipeline
from pipelines.framework.run import build_pipeline
from pipelines.framework.templates import SELECTOR
from transforms.redaction import install_redaction

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Builds the selected pipeline from ``argv`` and submits it.

    Raises:
        SystemExit: ``--pipeline`` is missing.
        KeyError, OptionError, EndpointError: the pipeline or an option is not valid.
    """
    selector = argparse.ArgumentParser(prog="flex_main", add_help=False)
    selector.add_argument(f"--{SELECTOR}", required=True)
    known, rest = selector.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    pipeline, _ = build_pipeline(get_pipeline(getattr(known, SELECTOR)), rest)
    pipeline.run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    install_redaction()
    main()
