"""HMAC request signatures: the offboarding webhook's and Slack's (pure; no I/O).

Slack's scheme is ``slack_sdk.signature.SignatureVerifier``'s (the library computes
and compares); the webhook's ``v1`` scheme is the same construction under another
prefix, which the library cannot produce, so it is computed here.

Headers are attacker-controlled text, so verification never raises: whatever
arrives (missing, non-numeric, negative, huge, fractional or non-ASCII
timestamps; signatures of any length or alphabet; bodies that are not UTF-8) is
either a valid signature or ``False``. The caller turns ``False`` into HTTP 401.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from slack_sdk.signature import Clock, SignatureVerifier

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


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``X-AccessBot-Signature``: ``v1=`` + hex HMAC-SHA256(secret, ``v1:{ts}:{body}``)."""
    base = f"v1:{timestamp}:".encode() + body
    return "v1=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def sign_slack(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Slack-Signature``: ``v0=`` + hex HMAC-SHA256(secret, ``v0:{ts}:{body}``).

    Computed by ``SignatureVerifier.generate_signature``; raises
    ``UnicodeDecodeError`` for a ``body`` that is not UTF-8 (Slack sends none).
    """
    signed = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signed is not None  # None only for a None timestamp
    return signed


class _FixedClock(Clock):
    """The verifier's clock, stopped at the caller's ``now`` (Unix seconds)."""

    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def _fresh(timestamp: str | None, now: float) -> bool:
    if timestamp is None or _TIMESTAMP.fullmatch(timestamp) is None:
        return False
    return abs(now - int(timestamp)) <= MAX_SKEW_SECONDS


def _matches(expected: str, signature: str | None) -> bool:
    if signature is None or _WEBHOOK_SIGNATURE.fullmatch(signature) is None:
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
    return _matches(sign(secret, timestamp, body), signature)


def verify_slack(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> bool:
    """Check ``X-Slack-Request-Timestamp`` / ``X-Slack-Signature`` of a Slack request.

    ``SignatureVerifier.is_valid`` (Slack's scheme, same source as
    ``MAX_SKEW_SECONDS``, whose five minutes it also keeps, and a constant-time
    compare) after the header shapes are checked here: the library would raise on
    a non-numeric timestamp or a non-ASCII signature. ``now`` is Unix seconds.
    Never raises: malformed headers, and a body that is not UTF-8 (the library
    signs text; Slack sends nothing else), are invalid.
    """
    if not secret.strip() or not _fresh(timestamp, now) or signature is None:
        return False  # the library refuses an empty secret with ValueError
    if _SLACK_SIGNATURE.fullmatch(signature) is None:
        return False
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    verifier = SignatureVerifier(secret, clock=_FixedClock(now))
    return verifier.is_valid(body=text, timestamp=timestamp, signature=signature)
