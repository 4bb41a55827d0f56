"""``python -m pipelines.devtools``: see `pipelines.devtools.cli`."""

import sys

from pipelines.devtools.cli import main

sys.exit(main())
