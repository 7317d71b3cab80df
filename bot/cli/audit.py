"""``accessbot audit GRANT_ID``: a grant's whole life, read from the audit stream."""

from __future__ import annotations

import argparse
from datetime import timedelta

from bot.cli.runtime import problem, redis_url, stamp
from bot.durations import format_duration
from bot.policy_file import PolicyError, load_policy
from bot.policy_schema import Defaults
from bot.redis_conn import redis_client
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
    delivery, each extension, the end, the receipt. Reads Redis (and the policy's
    ``defaults.retention``, to say how long history is kept)."""
    # Reads the store directly: no use case offers the audit history yet.
    async with redis_url(settings) as url:
        redis = redis_client(url)
        try:
            store = Store(redis, Scheduler(redis))
            entries = await store.audit_history(args.grant_id)
            forgotten = await store.get(args.grant_id) is None
        finally:
            await redis.aclose()
    kept = format_duration(_retention(settings))
    if not entries:
        return problem(
            f"no history kept for {args.grant_id}: no such grant, or it ended long ago: "
            f"records are kept for {kept} after a grant ends (defaults.retention), and the "
            f"audit stream keeps about {AUDIT_MAXLEN} entries, none older than {kept}"
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
    if forgotten:
        print(f"  (its record is gone: records are kept for {kept} after a grant ends)")
    return 0


def _retention(settings: Settings) -> timedelta:
    """The policy's ``defaults.retention``; its default when the policy cannot be read
    (the audit trail is still worth printing)."""
    try:
        return load_policy(settings.accessbot_policy).defaults.retention
    except (PolicyError, OSError):
        return Defaults().retention
