"""Errors that map to the Job's exit codes (see contract.EXIT_*)."""

from __future__ import annotations


class BadInput(Exception):
    """Bad configuration or input data: retrying cannot help (exit code 2).

    The message names the flag, file or folder at fault.
    """


class Terminated(BaseException):
    """The process received SIGTERM/SIGINT; the run ends KILLED.

    A BaseException, like KeyboardInterrupt, so that library code catching
    `Exception` does not swallow it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum
