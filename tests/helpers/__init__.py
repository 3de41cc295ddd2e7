"""Test helpers: fake API server, stacks, grid files, paths."""
