"""`python -m fisheye`: Phase 1 from the command line (see fisheye/cli.py)."""

import sys

from fisheye.cli import main

sys.exit(main())
