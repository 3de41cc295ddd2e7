"""The train Job: `python -m jobs.train`, one grid point trained and logged to MLflow."""
