"""Structured logging for the controller: the standard `logging` module, one JSON object per line.

Each line has `time`, `level`, `logger`, `event` (the message) and the fields
given as `extra` (grid, point, reason, run, error, ...), e.g.

    {"time": "2026-01-01T00:00:00.000Z", "level": "INFO", "logger": "controller.cluster.reconciler",
     "event": "JobCreated", "grid": "lab", "point": "train-0.01-1"}

so that `kubectl logs deploy/tp4-controller | jq 'select(.grid == "lab")'` follows one grid.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO

# The attributes every LogRecord has: anything else on a record came from `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "level": record.levelname, "logger": record.name, "event": record.getMessage()}
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure(*, stream: IO[str] | None = None, level: int = logging.INFO) -> logging.Handler:
    """JSON lines on stderr for the controller's loggers (`controller.*`) and the client's; idempotent."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLines())
    for name in ("controller", "kubernetes"):
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if not isinstance(h.formatter, JsonLines)] + [handler]
        logger.setLevel(level if name == "controller" else logging.WARNING)
        logger.propagate = False
    return handler
