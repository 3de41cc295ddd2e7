"""The finalizer Job: `python -m jobs.finalize`, rank a grid, decide, report, register."""
