"""structlog set-up: readable console lines for people, JSON for shippers.

Log lines are events with fields. Secret-looking fields are masked here, as a
last line of defence; destinations never put secrets into events anyway.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import sys
from typing import Any, Callable

import structlog
from structlog.typing import EventDict, WrappedLogger

_SECRET_KEYS = ("secret", "password", "passphrase", "token", "connection_string", "account_key", "credential")
_SECRET_KEY = re.compile("|".join(_SECRET_KEYS), re.IGNORECASE)


@functools.lru_cache(maxsize=1024)  # field names are few; a log line per copy asks about each of its ~12
def _secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


def _mask_secrets(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for key in event:
        if _secret_key(key):
            event[key] = "***"
    return event


SETTINGS = {"level": "info"}  # as last configured; destinations in their own process filter at the same level


def configure(log_format: str = "console", level: str = "info") -> None:
    SETTINGS.update(level=level)
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        # plain tracebacks: rich's, structlog's default when rich is loaded, list every frame's
        # local variables, and a secret can be one of them
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), pad_event_to=24,
                                                 exception_formatter=structlog.dev.plain_traceback)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_secrets,
            structlog.processors.format_exc_info if log_format == "json" else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def configure_forwarding(forward: Callable[[str, EventDict], None], level: str) -> None:
    """For a destination in a process of its own: every event, secrets masked,
    goes to `forward(level, fields)` (to the daemon, which renders it in its
    own stream) instead of being printed here."""

    def hand_over(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        forward(event.pop("level", "info"), event)
        raise structlog.DropEvent

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _mask_secrets,
            structlog.processors.format_exc_info,
            hand_over,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        cache_logger_on_first_use=True,
    )


def log_loop_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Errors asyncio reports itself (a library's task whose exception nobody
    retrieved, as asyncssh's parallel writes leave when a connection drops)
    become one log event instead of a multi-line traceback in the log stream."""

    def report(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        structlog.get_logger("triplicate.asyncio").warning(
            "asyncio_error", message=str(context.get("message", "")),
            error=f"{type(exc).__name__}: {exc}" if exc is not None else None,
        )

    loop.set_exception_handler(report)
