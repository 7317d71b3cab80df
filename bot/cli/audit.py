"""``accessbot audit GRANT_ID``: a grant's whole life, read from the audit stream."""

from __future__ import annotations

import argparse

from bot.cli.runtime import problem, redis_url, stamp
from bot.core import redis_client
from bot.scheduler import Scheduler
from bot.settings import Settings
from bot.store import AUDIT_MAXLEN, Store

# How each audit event reads in `accessbot audit` (anything else prints as recorded).
_EVENT_LABELS = {
    "active": "delivered",
    "verified": "receipt: verified",
    "verification_failed": "receipt: FAILED",
}


async def audit(settings: Settings, args: argparse.Namespace) -> int:
    """Print a grant's whole life from the audit stream: requested, each approval,
    delivery, each extension, the end, the receipt. Reads Redis only."""
    # Reads the store directly: no use case offers the audit history yet.
    async with redis_url(settings) as url:
        redis = redis_client(url)
        try:
            entries = await Store(redis, Scheduler(redis)).audit_history(args.grant_id)
        finally:
            await redis.aclose()
    if not entries:
        return problem(
            f"no audit history for {args.grant_id!r}: no such grant was ever "
            "recorded, or its history is gone (the stream keeps only the newest "
            f"~{AUDIT_MAXLEN} entries)"
        )
    first = entries[0]
    where = f" namespace {first['namespace']}" if first.get("namespace") else ""
    print(f"{args.grant_id}: {first['role']} on {first['cluster']}{where} for {first['requester']}")
    if first.get("event") != "requested":
        print("  (its start is gone from the stream: it keeps only the newest entries)")
    for e in entries:
        event = _EVENT_LABELS.get(e["event"], e["event"])
        if e["kind"] == "extend":
            event = f"extension request {event}"
        print(f"{stamp(e['at'])}  {event:<24} {e['actor']:<16} {e['reason']}".rstrip())
    return 0
