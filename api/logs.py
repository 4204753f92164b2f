"""Structured logs: one JSON object per line, each carrying the request id of the request it belongs to.

The request id lives in a context variable set by the request middleware (``api.middleware``); worker
threads started for a request copy the context, so their lines carry it too.

    configure_logging(settings)
    log = logging.getLogger("attest.api")
    log.info("query answered", extra={"decision": "served", "total_ms": 812.4})
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("attest_request_id", default=None)
tenant_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("attest_tenant", default=None)

# Attributes every LogRecord has; anything else was passed through ``extra=`` and is logged as a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "request_id", "tenant", "color_message"}


class ContextFilter(logging.Filter):
    """Puts the current request id and tenant on every record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        if not hasattr(record, "tenant"):
            record.tenant = tenant_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if getattr(record, "tenant", None):
            entry["tenant"] = record.tenant
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            # Logged for operators; never sent to a client (api.errors answers with problem+json).
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")


_configured = False


def configure_logging(settings, stream=None) -> None:
    """Route the ``attest`` and ``uvicorn`` loggers through one handler (JSON or text). Idempotent."""
    global _configured
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_json else TextFormatter())
    handler.addFilter(ContextFilter())
    for name in ("attest", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        if _configured:
            for old in list(logger.handlers):
                if getattr(old, "_attest", False):
                    logger.removeHandler(old)
        handler._attest = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(settings.log_level)
        logger.propagate = False
    # The access log is ours (one line per request with its id, status and duration): silence uvicorn's.
    logging.getLogger("uvicorn.access").disabled = True
    _configured = True
