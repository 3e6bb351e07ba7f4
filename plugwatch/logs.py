"""structlog, configured once per process: JSON lines in production, a readable console on a TTY."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

# Libraries that log every request at INFO; their warnings still come through.
_CHATTY = ("httpx", "httpcore")


def configure_logging(log_format: str = "auto", level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Configure structlog (and route stdlib logging, e.g. RQ's and uvicorn's, through the same output).

    Processes log to stdout; the CLI passes `stream=sys.stderr` so logs never mix with command output.
    """
    stream = stream or sys.stdout
    use_console = log_format == "console" or (log_format == "auto" and stream.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer,
        ])
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
