"""`python -m jobs.train`."""

import sys

from jobs.train.cli import main

sys.exit(main())
