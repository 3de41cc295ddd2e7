"""`python -m jobs.finalize`."""

import sys

from jobs.finalize.cli import main

sys.exit(main())
