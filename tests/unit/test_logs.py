"""The redaction filter: no token survives into a log line, whatever path it takes."""

from __future__ import annotations

import io
import json
import logging

import pytest

from bot.logs import REDACTED, ConsoleFormatter, JsonFormatter, RedactionFilter, redact

JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
SLACK = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp"

SECRETS = [JWT, SLACK, "xapp-1-A0123-456-abcdef0123456789"]


@pytest.mark.parametrize("secret", SECRETS)
def test_redact_removes_known_token_shapes(secret: str) -> None:
    out = redact(f"calling with {secret} now")
    assert secret not in out
    assert REDACTED in out


def test_redact_keeps_prefixes_that_say_what_was_removed() -> None:
    assert redact("Authorization: Bearer abcdefghijkl12345") == f"Authorization: Bearer {REDACTED}"
    assert redact('token: "s3cr3t-value-123"') == f'token: "{REDACTED}"'
    assert redact("grant abc123 approved by U0LEAD") == "grant abc123 approved by U0LEAD"


def _capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactionFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.redaction.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


@pytest.mark.parametrize("formatter", [JsonFormatter(), ConsoleFormatter()])
def test_filter_scrubs_args_extras_and_tracebacks(formatter: logging.Formatter) -> None:
    logger, stream = _capture(formatter)
    logger.info("kubeconfig for %s", JWT, extra={"detail": {"token": SLACK, "ids": [JWT]}})
    try:
        raise RuntimeError(f"apiserver said no to {JWT}")
    except RuntimeError:
        logger.exception("provisioning failed")
    text = stream.getvalue()
    for secret in (JWT, SLACK):
        assert secret not in text
    assert text.count(REDACTED) >= 4
    assert "provisioning failed" in text


def test_json_lines_are_parseable_and_carry_extras() -> None:
    logger, stream = _capture(JsonFormatter())
    logger.warning("grant %s failed", "abcd1234", extra={"grant_id": "abcd1234"})
    doc = json.loads(stream.getvalue())
    assert doc["msg"] == "grant abcd1234 failed"
    assert doc["grant_id"] == "abcd1234"
    assert doc["level"] == "warning"
