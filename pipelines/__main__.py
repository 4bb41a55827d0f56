"""``python -m pipelines``: see `pipelines.framework.cli`."""

import sys

from pipelines.framework.cli import main

sys.exit(main())
