"""Structured JSON logs on stderr. Tokens and secrets are never logged: jti or hash prefixes.

Every line, here and in the audit stream (audit.py), starts with the same fields (named as
structlog names them, the names of the OpenTelemetry log data model in lower case):
`timestamp` (RFC 3339, UTC, `Z`), `level`, `logger`, `event`; docs/operations.md lists them.
"""

from __future__ import annotations

import logging
import sys
import time

import structlog
from structlog.typing import EventDict, WrappedLogger


class UtcIsoClock:
    """The time now as `datetime.isoformat()` writes it in UTC, ending in `suffix`.

    Formatting a datetime costs a few microseconds on every Issue (its log line and
    audit line); here the date and time of day are formatted once per second and only
    the microseconds per call. Like isoformat, a time on a whole second has no fraction.
    """

    def __init__(self, suffix: str) -> None:
        self._suffix = suffix
        self._second: tuple[int, str] = (-1, "")  # replaced whole: safe across threads

    def __call__(self) -> str:
        second, micro = divmod(time.time_ns() // 1000, 1_000_000)
        cached, prefix = self._second
        if second != cached:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, prefix)
        if micro:
            return f"{prefix}.{micro:06d}{self._suffix}"
        return prefix + self._suffix


_LOG_CLOCK = UtcIsoClock("Z")


def _timestamp(logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
    # What structlog's TimeStamper(fmt="iso", utc=True) writes, cheaper.
    event_dict["timestamp"] = _LOG_CLOCK()
    return event_dict


class _NamedPrintLogger(structlog.PrintLogger):
    """A PrintLogger that keeps the name given to get_logger, for `logger`."""

    def __init__(self, name: str) -> None:
        super().__init__(sys.stderr)
        self.name = name


def _named_logger(*args: object) -> _NamedPrintLogger:
    return _NamedPrintLogger(str(args[0]) if args else "tokend")


HEADER = ("timestamp", "level", "logger", "event")


def _header_first(logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
    # The audit stream's order: a reader sees when, how bad and what before the details.
    return {key: event_dict.pop(key) for key in HEADER if key in event_dict} | event_dict


def configure_logging(level: str = "info") -> None:
    numeric = logging.getLevelName(level.upper())
    logging.basicConfig(stream=sys.stderr, level=numeric, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _timestamp,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.format_exc_info,
            _header_first,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_named_logger,
        cache_logger_on_first_use=True,
    )
