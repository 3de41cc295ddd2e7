"""The embedded default: the local executor, its kubelet (Jobs as processes) and its state store."""
