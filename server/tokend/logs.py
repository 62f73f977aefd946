"""Structured JSON logs on stderr. Tokens and secrets are never logged: jti or hash prefixes."""

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


def configure_logging(level: str = "info") -> None:
    numeric = logging.getLevelName(level.upper())
    logging.basicConfig(stream=sys.stderr, level=numeric, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _timestamp,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
