"""HMAC request signatures: the offboarding webhook's and Slack's (pure; no I/O).

Headers are attacker-controlled text, so verification never raises: whatever
arrives (missing, non-numeric, negative, huge, fractional or non-ASCII
timestamps; signatures of any length or alphabet) is either a valid signature
or ``False``. The caller turns ``False`` into HTTP 401.
"""

from __future__ import annotations

import hashlib
import hmac
import re

__all__ = ["MAX_SKEW_SECONDS", "sign", "sign_slack", "verify", "verify_slack"]

# Slack rejects replays older than five minutes; the webhook keeps the same window.
# Source: https://api.slack.com/authentication/verifying-requests-from-slack
MAX_SKEW_SECONDS = 300

# A Unix time in whole seconds, ASCII digits only: int() would also accept "+5",
# " 5", "1_000" and non-ASCII digits, none of which a real sender produces. Twelve
# digits reach the year 33658, and keep int() far from its digit limit.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_SHA256 = r"[0-9a-f]{64}"
_WEBHOOK_SIGNATURE = re.compile("v1=" + _HEX_SHA256)
_SLACK_SIGNATURE = re.compile("v0=" + _HEX_SHA256)


def _mac(secret: str, version: str, timestamp: str, body: bytes) -> str:
    base = f"{version}:{timestamp}:".encode() + body
    return f"{version}=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``X-AccessBot-Signature``: ``v1=`` + hex HMAC-SHA256(secret, ``v1:{ts}:{body}``)."""
    return _mac(secret, "v1", timestamp, body)


def sign_slack(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Slack-Signature``: ``v0=`` + hex HMAC-SHA256(secret, ``v0:{ts}:{body}``)."""
    return _mac(secret, "v0", timestamp, body)


def _fresh(timestamp: str | None, now: float) -> bool:
    if timestamp is None or _TIMESTAMP.fullmatch(timestamp) is None:
        return False
    return abs(now - int(timestamp)) <= MAX_SKEW_SECONDS


def _matches(expected: str, signature: str | None, shape: re.Pattern[str]) -> bool:
    if signature is None or shape.fullmatch(signature) is None:
        return False
    # Both are ASCII by now: compare_digest raises TypeError on non-ASCII str.
    return hmac.compare_digest(expected.encode(), signature.encode())


def verify(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> bool:
    """Constant-time check of ``X-AccessBot-Signature`` within the replay window.

    ``now`` is Unix seconds. Never raises: malformed headers are just invalid.
    """
    if not _fresh(timestamp, now):
        return False
    assert timestamp is not None
    return _matches(sign(secret, timestamp, body), signature, _WEBHOOK_SIGNATURE)


def verify_slack(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> bool:
    """Check ``X-Slack-Request-Timestamp`` / ``X-Slack-Signature`` of a Slack request.

    Slack's scheme (same source as ``MAX_SKEW_SECONDS``) over the raw ``body``
    bytes; ``now`` is Unix seconds. Never raises: malformed headers are invalid.
    """
    if not _fresh(timestamp, now):
        return False
    assert timestamp is not None
    return _matches(sign_slack(secret, timestamp, body), signature, _SLACK_SIGNATURE)
