"""Structured logging with a redaction filter that keeps secrets out of every line."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

# Slack tokens, JWTs (ServiceAccount tokens), bearer headers, kubeconfig token lines.
_SECRET_PATTERNS = [
    re.compile(r"xox[abposre]-[0-9A-Za-z-]{8,}"),
    re.compile(r"xapp-[0-9A-Za-z-]{8,}"),
    re.compile(r"eyJ[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}"),
    re.compile(r"(?i)(bearer\s+)[0-9A-Za-z._~+/=-]{8,}"),
    re.compile(r"(?i)(\btoken\b[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{8,}"),
]
REDACTED = "[REDACTED]"
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


class RedactionFilter(logging.Filter):
    """Scrubs the message, its arguments, extras and tracebacks before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD:
                record.__dict__[key] = _redact_value(value)
        if record.exc_info:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(formatted)
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        tail = " ".join(f"{k}={v}" for k, v in extras.items() if k != "audit")
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        line = f"{line}  {tail}" if tail else line
        return f"{line}\n{record.exc_text}" if record.exc_text else line


def setup_logging(fmt: str = "json", level: str = "INFO") -> None:
    """Send every log record to stderr, redacted: one JSON object per line
    (``fmt="json"``, the default) or a readable line (any other ``fmt``, i.e.
    ``console``). ``level`` is a logging level name (default ``INFO``); raises
    ``ValueError`` for an unknown one."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that log request bodies at DEBUG could echo a token: keep them quieter.
    for noisy in ("slack_sdk", "slack_bolt", "urllib3", "kubernetes", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(level)))
