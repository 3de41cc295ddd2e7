"""The cluster backend: the Grid resource and its status, the reconcile loop, the cluster verbs."""
