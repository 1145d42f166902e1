"""``python -m edge_ls`` is ``edge-ls``."""

import sys

from edge_ls.cli import main

sys.exit(main())
