"""The audit channel under a burst: digests ("37 grants expired in the last minute:
`g1`, `g2`, …") that name every grant id, split across messages within Slack's
limits (3,000 characters a section, 50 blocks a message). The per-change detail
(who, what role, why) stays in the Redis audit stream (``accessbot audit ID``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bot.slack.blocks.kit import Message, context, section
from bot.slack.text import MESSAGE_BLOCK_LIMIT, SECTION_TEXT_LIMIT, code, md

__all__ = ["DIGEST_NOTE", "Digest", "audit_digests", "what_happened"]

# What the changes did, by the audit event (a state reached, or a noted event):
# singular and plural.
_PHRASES: dict[str, tuple[str, str]] = {
    "requested": ("request made", "requests made"),
    "pending": ("request back to pending", "requests back to pending"),
    "approved": ("request approved", "requests approved"),
    "provisioning": ("grant being set up", "grants being set up"),
    "active": ("grant became active", "grants became active"),
    "expired": ("grant expired", "grants expired"),
    "revoked": ("grant revoked", "grants revoked"),
    "denied": ("request denied", "requests denied"),
    "cancelled": ("request cancelled", "requests cancelled"),
    "timed_out": ("request timed out", "requests timed out"),
    "failed": ("grant failed", "grants failed"),
    "applied": ("extension applied", "extensions applied"),
    "extended": ("grant extended", "grants extended"),
    "verified": ("revocation verified (receipt)", "revocations verified (receipts)"),
}

DIGEST_NOTE = (
    "Many changes at once: the audit channel gets a digest instead of one post each. "
    "Every change is in the audit stream: `accessbot audit GRANT_ID` shows who, what and why."
)


@dataclass(frozen=True)
class Digest:
    """One digest message and how many of the given ids (in order) it names."""

    message: Message
    count: int


def what_happened(event: str, n: int) -> str:
    """``"37 grants expired"``: ``n`` changes of one audit ``event``."""
    one, many = _PHRASES.get(event, (f"change ({event})", f"changes ({event})"))
    return f"{n} {one if n == 1 else many}"


def _when(span_seconds: float) -> str:
    minutes = max(1, math.ceil(span_seconds / 60))
    return "in the last minute" if minutes == 1 else f"in the last {minutes} minutes"


def audit_digests(groups: Sequence[tuple[str, Sequence[str]]], span_seconds: float) -> list[Digest]:
    """Digest messages naming every id of ``groups`` (audit event, grant ids), in order.

    Each group opens with its count ("37 grants expired in the last minute:"); its
    ids follow in sections of at most 3,000 characters; a message holds at most 49
    sections and the note. The ``count`` of each digest says how many ids (taken
    in order across the groups) it names, so a sender knows what each one covers.
    """
    when = _when(span_seconds)
    sections = [part for event, ids in groups if ids for part in _sections(event, ids, when)]
    per_message = MESSAGE_BLOCK_LIMIT - 1  # and the note
    digests = []
    for start in range(0, len(sections), per_message):
        chunk = sections[start : start + per_message]
        named: dict[str, int] = {}
        for event, n, _text in chunk:
            named[event] = named.get(event, 0) + n
        summary = ", ".join(what_happened(event, n) for event, n in named.items())
        blocks = [section(md(text)) for _event, _n, text in chunk]
        message = Message(f"Audit digest: {summary} {when}.", [*blocks, context(md(DIGEST_NOTE))])
        digests.append(Digest(message, sum(named.values())))
    return digests


def _sections(event: str, ids: Sequence[str], when: str) -> list[tuple[str, int, str]]:
    """One group's sections: (event, how many ids, mrkdwn text of at most 3,000 chars)."""
    heading = f"*{what_happened(event, len(ids))}* {when}:"
    out: list[tuple[str, int, str]] = []
    text, n = heading + "\n", 0
    for grant_id in ids:
        piece = code(grant_id) if n == 0 else ", " + code(grant_id)
        if n and len(text) + len(piece) > SECTION_TEXT_LIMIT:
            out.append((event, n, text))
            text, n = f"{heading} (continued)\n", 0
            piece = code(grant_id)
        text += piece
        n += 1
    out.append((event, n, text))
    return out
