"""Revocation, offboarding and provisioning never wait on Slack (issue 16, item 1): every
message goes through the durable outbox (bot/outbox.py), so a stalled or throttled Slack
delays the messages and never the access decision; the messages arrive once Slack
answers again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bot.lifecycle import State
from bot.models import Grant
from bot.policy import AccessRequestSpec
from k8s import grants as k8s_grants
from tests.slack.support import AUDIT, SlackBed
from tests.support.patience import PATIENCE

MESSAGES = ("chat.postMessage", "chat.update", "files.delete")
PLACES = (("a", "team-a"), ("b", "team-b"), ("a", "team-b"))


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _view(cluster: str, namespace: str) -> AccessRequestSpec:
    return AccessRequestSpec(
        requester="U0ALICE",
        role="view",
        cluster=cluster,
        namespace=namespace,
        duration=None,
        reason="on call",
    )


async def _active_grants(bed: SlackBed) -> list[Grant]:
    """Three live view grants of U0ALICE, every message about them told."""
    made = [await bed.core.workflow.submit(_view(c, ns)) for c, ns in PLACES]
    active = [await bed.wait_grant(g.id, State.ACTIVE) for g in made]
    await bed.settled()
    return active


async def _objects_of(bed: SlackBed, grants: list[Grant]) -> list[str]:
    ids = {g.id for g in grants}
    return [
        f"{name}/{o.kind}/{o.grant_id}"
        for name in ("a", "b")
        for o in await k8s_grants.list_managed(bed.core.clusters[name])
        if o.grant_id in ids
    ]


def _answered(bed: SlackBed, since: int) -> list[str]:
    """Message calls Slack answered after the first ``since`` calls."""
    return [c.method for c in bed.emu.calls[since:] if c.method in MESSAGES]


async def _told_everything(bed: SlackBed, grants: list[Grant]) -> None:
    """Each end and each verified receipt reached the requester and the audit channel."""

    async def receipts() -> bool:
        posted = [m["text"] for m in bed.emu.messages(AUDIT)]
        in_channel = all(
            any("Revocation receipt" in t and g.id in t for t in posted) for g in grants
        )
        in_dms = sum("verified at" in str(m) for m in bed.dm("U0ALICE"))
        return in_channel and in_dms >= len(grants)

    await _until(receipts, "a receipt in the audit channel and a DM for every grant")
    await bed.settled()
    assert not await bed.core.outbox.untold()


async def test_revoke_and_offboard_with_slack_stalled_delete_at_once_and_tell_later(
    bed: SlackBed,
) -> None:
    grants = await _active_grants(bed)
    assert len(await _objects_of(bed, grants)) == 2 * len(grants)
    since = len(bed.emu.calls)
    bed.emu.hold(*MESSAGES)  # Slack answers no message call at all until released
    try:
        revoked = await bed.core.workflow.revoke(grants[0].id, "U0ADMIN", "done")
        assert revoked.state == State.REVOKED
        result = await bed.core.workflow.offboard("U0ALICE", "U0ADMIN", "left the company")
        assert sorted(result.revoked) == sorted(g.id for g in grants[1:])
        assert not result.pending
        # The access is gone and proven gone while Slack has answered nothing: no
        # message call was on the path of either decision.
        assert await _objects_of(bed, grants) == []
        for g in grants:
            ended = await bed.core.store.get(g.id)
            assert ended is not None
            assert ended.receipt is not None
            assert ended.receipt.verified
        assert _answered(bed, since) == []
        assert await bed.core.outbox.untold() > 0  # the messages wait, durably
    finally:
        bed.emu.release()
    await _told_everything(bed, grants)


async def test_revoke_and_offboard_with_slack_throttling_tell_everything(bed: SlackBed) -> None:
    """Every message call answers 429 (Retry-After) a few times before it goes through:
    the accesses end as fast as ever, and every message arrives through the client's
    retry handlers."""
    grants = await _active_grants(bed)
    for method in MESSAGES:
        bed.emu.rate_limit(method, retry_after=1, times=3)
    await bed.core.workflow.revoke(grants[0].id, "U0ADMIN", "done")
    await bed.core.workflow.offboard("U0ALICE", "U0ADMIN", "left the company")
    assert await _objects_of(bed, grants) == []
    await _told_everything(bed, grants)
    assert any(c.status == 429 for c in bed.emu.calls if c.method == "chat.postMessage")


async def test_the_kubeconfig_upload_is_the_one_slack_call_on_the_provisioning_path(
    bed: SlackBed,
) -> None:
    """With every message call stalled, an auto-approved request is provisioned and its
    kubeconfig delivered; the card-free DMs and audit posts follow once Slack answers."""
    since = len(bed.emu.calls)
    bed.emu.hold(*MESSAGES)
    try:
        grant = await bed.core.workflow.submit(_view("a", "team-a"))
        active = await bed.wait_grant(grant.id, State.ACTIVE)
        assert active.delivered_file is not None
        shared = [f for f in bed.emu.uploaded_files if f.file_id == active.delivered_file]
        assert shared
        assert shared[0].completed
        assert _answered(bed, since) == []
    finally:
        bed.emu.release()

    async def audited() -> bool:
        return any(grant.id in m["text"] for m in bed.emu.messages(AUDIT))

    await _until(audited, "the audit post about the grant")
    await bed.settled()


async def test_messages_slack_fails_past_the_clients_retries_are_told_later(
    bed: SlackBed,
) -> None:
    """Slack answers every message call with a bare 503 for longer than the client's own
    retries last (a Slack outage, a proxy down): a receipt is not acknowledged as told
    and dropped after one failed telling; it is told again until Slack takes it, once."""
    grants = await _active_grants(bed)
    for method in MESSAGES:
        bed.emu.server_error(method, 503, times=100_000)
    grant = grants[0]
    await bed.core.workflow.revoke(grant.id, "U0ADMIN", "done")
    assert await _objects_of(bed, [grant]) == []

    dm = bed.emu.dm_channel("U0ALICE")

    def dm_posts(status: int, needle: str) -> list[str]:
        return [
            str(c.params.get("text"))
            for c in bed.emu.calls
            if c.method == "chat.postMessage"
            and c.status == status
            and c.params.get("channel") == dm
            and grant.id in str(c.params.get("text"))
            and needle in str(c.params.get("text"))
        ]

    async def told_twice() -> bool:
        # Three HTTP attempts per telling (the client retries a 5xx twice): six failed
        # posts of the same DM are a second telling of a change Slack did not take.
        ended = dm_posts(503, "")
        return len(ended) >= 6 and len(set(ended)) == 1

    await _until(told_twice, "the outbox telling the end again through the outage")
    assert await bed.core.outbox.untold() > 0  # still owed, not dropped
    bed.emu.clear_faults()
    await _told_everything(bed, [grant])
    (told,) = set(dm_posts(503, ""))
    assert dm_posts(200, told) == [told]  # the end, told once when Slack took it
    assert len(dm_posts(200, "verified at")) == 1  # then the receipt, once
