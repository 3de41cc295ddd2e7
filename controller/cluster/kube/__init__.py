"""The controller's Kubernetes adapter: thin functions over the API server's REST paths.

One module per verb (creating, reading, replacing, patching, deleting,
watching, mirroring, pod_logs, recording), each with keyword-only parameters
and plain dicts in and out (the objects as the API server sends them). HTTP
goes through `requests`, already a dependency of MLflow's client: the adapter
adds no package to the controller image. `jobs` never imports this package.
"""
