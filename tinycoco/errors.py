"""The one error the dataset builder raises for bad input."""

from __future__ import annotations


class DatasetError(Exception):
    """Bad or unusable input: the message names the path or value at fault.

    The CLI maps it to exit code 2 (`contract.EXIT_BAD_INPUT`); when it is
    raised, nothing has been written to the output folder.
    """
