"""What runs inside a tp4 Job: the train job (`python -m jobs.train`), the
finalizer, and their shared MLflow (`jobs.common.tracking`) and DVC (`jobs.common.dataset`)
helpers.

Importing this package is cheap: no torch, no ultralytics, never the
kubernetes client. Heavy imports happen inside the modules that need them.
"""
