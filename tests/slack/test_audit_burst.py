"""A burst of revocations under Slack's per-channel rate limit (issue 16, item 6).

60 live grants are revoked at once with the emulator enforcing about one post per
second per channel (429 with ``Retry-After`` beyond it, as Slack does). The audit
channel gets digests naming every grant id instead of 120 posts; every DM arrives
though Slack refused many of them at first; the Redis audit stream has exactly one
entry per change. Real apiservers, real Redis, the Bolt app; no duration is asserted.

The digest window is short here (``AuditPace(window_seconds=5)``), so nothing waits
long; the sender's own timing is driven by a test clock in tests/unit/test_audit_digest.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.lifecycle import State
from bot.models import Grant
from bot.policy_requests import AccessRequestSpec
from bot.slack.audit_digest import AuditPace
from tests.slack.support import AUDIT, SlackBed, slack_bed
from tests.support.cluster import TestCluster
from tests.support.patience import PATIENCE
from tests.support.slack_emulator import ChannelLimit, SlackEmulator

pytestmark = pytest.mark.cluster

USERS = ("U0ALICE", "U0BOB", "U0LEAD", "U0BOSS", "U0PL1", "U0PL2")
GRANTS = 60


@pytest.fixture
async def limited(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> AsyncIterator[SlackBed]:
    emu = await SlackEmulator(channel_limit=ChannelLimit(per_second=1, burst=3)).start()
    pace = AuditPace(backlog=3, window_seconds=5)
    try:
        async with slack_bed(
            redis_url, {"a": cluster, "b": cluster_b}, tmp_path, emu=emu, audit_pace=pace
        ) as bed:
            yield bed
    finally:
        await emu.stop()


def _spec(n: int) -> AccessRequestSpec:
    return AccessRequestSpec(
        requester=USERS[n % len(USERS)],
        role="view",
        cluster="a",
        namespace=("team-a", "team-b")[n % 2],
        duration=dt.timedelta(hours=1),
        reason=f"burst drill {n}",
    )


def _told(message: dict[str, Any]) -> set[tuple[str, str]]:
    """(what, grant id) pairs one audit-channel message tells: a digest's sections, or
    a single change ("→ *revoked*") or receipt ("Revocation receipt for `id`: verified")."""
    told: set[tuple[str, str]] = set()
    if message["text"].startswith("Audit digest:"):
        for block in message.get("blocks") or []:
            text = (block.get("text") or {}).get("text", "") if block["type"] == "section" else ""
            what = "revoked" if "revoked*" in text else "verified" if "verified" in text else ""
            told |= {(what, g) for g in re.findall(r"`([a-z2-7]+)`", text.split(":", 1)[-1])}
        return told
    found = re.search(r"`([a-z2-7]+)`", message["text"])
    if found and "→ *revoked*" in message["text"]:
        told.add(("revoked", found.group(1)))
    if found and message["text"].startswith("Revocation receipt") and "verified" in message["text"]:
        told.add(("verified", found.group(1)))
    return told


async def test_sixty_revocations_at_once_digest_the_audit_channel_and_lose_nothing(
    limited: SlackBed,
) -> None:
    bed = limited
    workflow = bed.core.workflow
    grants: list[Grant] = [await workflow.submit(_spec(n)) for n in range(GRANTS)]
    for g in grants:
        await bed.wait_grant(g.id, State.ACTIVE, timeout=PATIENCE * 2)
    await bed.settled(PATIENCE * 2)  # every post of the set-up is out
    posted_before = len(bed.emu.messages(AUDIT))
    calls_before = len(bed.emu.calls)

    await asyncio.gather(*(workflow.revoke(g.id, "U0ADMIN", "drill") for g in grants))
    ids = {g.id for g in grants}

    async def receipts_verified() -> bool:
        records = [await bed.core.store.get(i) for i in ids]
        return all(r is not None and r.receipt is not None and r.receipt.verified for r in records)

    deadline = asyncio.get_running_loop().time() + PATIENCE * 2
    while not await receipts_verified():
        assert asyncio.get_running_loop().time() < deadline, "receipts never all verified"
        await asyncio.sleep(0.1)
    await bed.settled(PATIENCE * 2)  # every DM and audit post is out

    # The audit stream: exactly one entry per change, whatever Slack did.
    stream = [e for e in await bed.core.store.audit_tail(10_000) if e["grant_id"] in ids]
    for g in ids:
        events = [e["event"] for e in stream if e["grant_id"] == g]
        assert events.count("revoked") == 1, (g, events)
        assert events.count("verified") == 1, (g, events)
    changes = 2 * GRANTS

    # The audit channel: far fewer messages than changes, and every id told for both.
    messages = bed.emu.messages(AUDIT)[posted_before:]
    told = set().union(*(_told(m) for m in messages))
    missing = {(what, g) for g in ids for what in ("revoked", "verified")} - told
    assert not missing, f"not in the audit channel: {sorted(missing)}"
    assert any(m["text"].startswith("Audit digest:") for m in messages)
    assert len(messages) <= changes // 4, [m["text"] for m in messages]

    # Slack pushed back (429 with Retry-After) and no message was lost to it: every
    # requester has the receipt DM of each of their grants.
    posts = [c for c in bed.emu.calls[calls_before:] if c.method == "chat.postMessage"]
    assert any(c.status == 429 for c in posts)
    for g in grants:
        copies = [
            m for m in bed.dm(g.requester) if g.id in m["text"] and "verified at" in m["text"]
        ]
        assert len(copies) == 1, (g.id, g.requester)
    print(
        f"\n{changes} changes -> {len(messages)} audit-channel messages; "
        f"{sum(c.status == 429 for c in posts)} posts answered 429 and retried"
    )
