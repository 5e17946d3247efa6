"""Structured logs: one JSON object per line, for log shippers and ``jq``."""

from __future__ import annotations

import json
import logging
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    """Formats records as JSON; a record's ``fields`` extra is merged into the object."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str) -> None:
    """JSON lines on stderr for the app's loggers; leaves other handlers alone, and turns off
    uvicorn's access log, which the app's replaces."""
    logger = logging.getLogger("app")
    logger.setLevel(level.upper())
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    # The app logs every request itself (app.access, app/middleware.py); uvicorn's access log
    # would print each one a second time under any launcher that leaves it on.
    logging.getLogger("uvicorn.access").disabled = True
