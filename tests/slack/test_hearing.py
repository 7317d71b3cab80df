"""Everyone hears about their request (issue 15.7), end to end: signed Slack requests in,
the Slack emulator out, real Redis and real apiservers.

For every state change the requester's DM arrives exactly once, naming who did it
(and, for a denial, why); the approval card names the approvers at every change; App
Home lists what the viewer may approve and their live grants, and a click there works
and redraws it. "Exactly once" is checked after ``bed.settled()``, never after a sleep.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.lifecycle import State
from tests.slack.support import (
    APPROVALS,
    POLICY,
    SlackBed,
    blocks_text,
    slack_bed,
)
from tests.support.cluster import TestCluster
from tests.support.slack_emulator import RecordedCall
from tests.support.slack_signing import (
    _payload_form,
    block_actions_body,
    block_actions_payload,
    retry_headers,
    text_input,
)

pytestmark = pytest.mark.cluster


def dms_with(bed: SlackBed, user: str, needle: str) -> list[dict[str, Any]]:
    return [m for m in bed.dm(user) if needle in json.dumps(m)]


async def once(bed: SlackBed, user: str, needle: str) -> dict[str, Any]:
    """The one DM to ``user`` containing ``needle``: it arrives, and no second one follows."""
    await bed.wait_dm(user, needle)
    await bed.settled()
    found = dms_with(bed, user, needle)
    assert len(found) == 1, f"{len(found)} DMs to {user} with {needle!r}: {found}"
    return found[0]


def buttons(blocks: list[dict[str, Any]]) -> dict[str, list[str]]:
    """action_id -> the values of every button with it."""
    found: dict[str, list[str]] = {}
    for block in blocks:
        for element in block.get("elements") or []:
            if element.get("type") == "button":
                found.setdefault(element["action_id"], []).append(element["value"])
    return found


async def home_of(bed: SlackBed, user: str, after: int = 0) -> dict[str, Any]:
    """The next App Home published for ``user`` (the ``after``-th publish to them or later)."""

    def theirs(call: RecordedCall) -> bool:
        return call.params.get("user_id") == user

    calls = await bed.emu.wait_for("views.publish", after + 1, predicate=theirs)
    view = calls[-1].params["view"]
    assert isinstance(view, dict)
    return view


def publishes_to(bed: SlackBed, user: str) -> int:
    return len([c for c in bed.emu.calls_to("views.publish") if c.params.get("user_id") == user])


async def open_home(bed: SlackBed, user: str) -> dict[str, Any]:
    seen = publishes_to(bed, user)
    await bed.event({"type": "app_home_opened", "user": user, "channel": "D0", "tab": "home"})
    return await home_of(bed, user, seen)


async def click_in_home(
    bed: SlackBed, action_id: str, value: str, user: str, home: dict[str, Any]
) -> None:
    """A button click on App Home, as Slack sends it (a view container, no response_url)."""
    payload = block_actions_payload(
        action_id, value, user, "D0", "0", message={"ts": "0", "blocks": home["blocks"]}
    )
    payload.pop("response_url")
    payload.pop("message")
    payload["container"] = {"type": "view", "view_id": "V0HOME"}
    payload["view"] = {"id": "V0HOME", "type": "home", "blocks": home["blocks"]}
    reply = await bed.post(_payload_form(payload))
    assert reply.status == 200


async def test_every_step_of_a_two_approval_grant_is_told_once(bed: SlackBed) -> None:
    grant = await bed.request("request cluster-admin -c b -d 30m incident 42", "U0ALICE")
    card = await bed.wait_card(grant.id)

    # The first approval: counted, and the requester hears who gave it. A retried
    # delivery of the same click changes nothing and tells nobody again.
    first = block_actions_body(
        "access_approve",
        grant.id,
        "U0LEAD",
        APPROVALS,
        str(card["ts"]),
        message=card,
        response_url=bed.emu.new_response_url(),
    )
    assert (await bed.post(first)).status == 200
    assert (await bed.post(first, headers=retry_headers(1))).status == 200
    await once(bed, "U0ALICE", "<@U0LEAD> approved your request")
    counted = await bed.wait_card(grant.id, lambda m: "1 of 2" in blocks_text(m))
    assert "<@U0LEAD>" in blocks_text(counted)

    await bed.click("access_approve", grant.id, "U0BOSS", counted, APPROVALS)
    await bed.wait_grant(grant.id, State.ACTIVE)
    both = "approved by <@U0LEAD> and <@U0BOSS>"
    await once(bed, "U0ALICE", both)
    await once(bed, "U0ALICE", "export KUBECONFIG")
    await bed.wait_card(
        grant.id,
        lambda m: "Approved by <@U0LEAD> and <@U0BOSS>; access is active" in blocks_text(m),
    )

    # An admin revokes it: the requester hears who, the card names everyone involved.
    await bed.command(f"revoke {grant.id}", "U0ADMIN")
    await bed.wait_grant(grant.id, State.REVOKED)
    await once(bed, "U0ALICE", "was revoked by <@U0ADMIN>")
    ended = await bed.wait_card(
        grant.id,
        lambda m: (
            "Approved by <@U0LEAD> and <@U0BOSS>, then revoked by <@U0ADMIN>" in blocks_text(m)
        ),
    )
    assert ended["ts"] == card["ts"]  # updated in place
    # (the "access granted" DM was edited to say it ended: no new message)
    for needle in (both, "<@U0LEAD> approved your request"):
        assert len(dms_with(bed, "U0ALICE", needle)) == 1


async def test_denial_names_the_approver_and_the_reason(bed: SlackBed) -> None:
    grant = await bed.request("request edit -n team-a -d 1h fixing checkout", "U0ALICE")
    card = await bed.wait_card(grant.id)
    await bed.click("access_deny", grant.id, "U0PL1", card, APPROVALS)
    (opened,) = await bed.emu.wait_for("views.open")
    hostile = "use view <!channel> instead"
    values = {"reason": {"value": text_input(hostile)}}
    metadata = opened.params["view"]["private_metadata"]
    await bed.submit("access_deny_modal", values, "U0PL1", metadata)
    await bed.wait_grant(grant.id, State.DENIED)
    dm = await once(bed, "U0ALICE", "was denied by <@U0PL1>")
    assert "use view &lt;!channel&gt; instead" in blocks_text(dm)
    assert "<!channel>" not in json.dumps(dm)
    final = await bed.wait_card(grant.id, lambda m: "Denied by <@U0PL1>" in blocks_text(m))
    assert "use view &lt;!channel&gt; instead" in blocks_text(final)


async def test_cancelled_by_an_admin_or_by_oneself(bed: SlackBed) -> None:
    theirs = await bed.request("request edit -n team-a -d 1h first", "U0ALICE")
    await bed.wait_card(theirs.id)
    await bed.command(f"revoke {theirs.id}", "U0ADMIN")
    await bed.wait_grant(theirs.id, State.CANCELLED)
    await once(bed, "U0ALICE", "was cancelled by <@U0ADMIN>")
    await bed.wait_card(theirs.id, lambda m: "Cancelled by <@U0ADMIN>" in blocks_text(m))

    mine = await bed.request("request edit -n team-b -d 1h second", "U0ALICE")
    await bed.wait_card(mine.id)
    await bed.command(f"revoke {mine.id}", "U0ALICE")
    await bed.wait_grant(mine.id, State.CANCELLED)
    await once(bed, "U0ALICE", f"You cancelled your request `{mine.id}`")


async def test_timed_out_and_expired_are_told_once(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    policy = POLICY.replace("pending_ttl: 24h", "pending_ttl: 2s")
    async with slack_bed(
        redis_url, {"a": cluster, "b": cluster_b}, tmp_path, policy_text=policy
    ) as bed:
        waits = await bed.request("request edit -n team-a -d 1h nobody looks", "U0ALICE")
        await bed.wait_grant(waits.id, State.TIMED_OUT)
        told = await once(bed, "U0ALICE", "timed out")
        assert "Ask again with `/access`" in blocks_text(told)
        await bed.wait_card(waits.id, lambda m: "Timed out" in blocks_text(m))

        short = await bed.request("request edit -n team-b -d 20s quick look", "U0BOB")
        card = await bed.wait_card(short.id)
        await bed.click("access_approve", short.id, "U0LEAD", card, APPROVALS)
        await bed.wait_grant(short.id, State.EXPIRED)
        await once(bed, "U0BOB", "has expired")
        await bed.wait_card(
            short.id,
            lambda m: "Approved by <@U0LEAD>; the access has expired" in blocks_text(m),
        )


async def test_failure_says_what_to_do_and_no_exception(bed: SlackBed) -> None:
    bed.emu.fail("files.getUploadURLExternal", "missing_scope", needed="files:write")
    grant = await bed.request("request view -c a -n team-a -d 1h reading", "U0ALICE")
    await bed.wait_grant(grant.id, State.FAILED)
    dm = await once(bed, "U0ALICE", "failed")
    shown = blocks_text(dm)
    assert "missing_scope" in shown  # the reason
    assert "ask <@U0ADMIN>" in shown  # and who can fix it
    assert f"quote `{grant.id}`" in shown
    for raw in ("Traceback", "Error(", "Exception"):
        assert raw not in shown


async def test_extension_denied_is_told(bed: SlackBed) -> None:
    grant = await bed.request("request edit -n team-a -d 1h fixing", "U0ALICE")
    await bed.click("access_approve", grant.id, "U0LEAD", await bed.wait_card(grant.id), APPROVALS)
    await bed.wait_grant(grant.id, State.ACTIVE)
    await bed.command(f"extend {grant.id} -d 1h", "U0ALICE")
    await bed.wait_response("went to the approvers")
    (extension,) = [g for g in await bed.core.store.by_user("U0ALICE") if g.kind == "extend"]
    card = await bed.wait_card(extension.id)
    await bed.click("access_deny", extension.id, "U0LEAD", card, APPROVALS)
    opened = await bed.emu.wait_for(
        "views.open", predicate=lambda c: extension.id in json.dumps(c.params)
    )
    values = {"reason": {"value": text_input("not today")}}
    metadata = opened[-1].params["view"]["private_metadata"]
    await bed.submit("access_deny_modal", values, "U0LEAD", metadata)
    dm = await once(bed, "U0ALICE", "extension request")
    assert "denied by <@U0LEAD>" in blocks_text(dm)
    assert "not today" in blocks_text(dm)


async def test_app_home_lists_what_to_approve_and_live_grants(bed: SlackBed) -> None:
    pending = await bed.request("request edit -n team-a -d 1h fixing checkout", "U0ALICE")
    await bed.wait_card(pending.id)
    live = await bed.request("request view -c a -n team-b -d 1h reading", "U0BOB")
    await bed.wait_grant(live.id, State.ACTIVE)

    # An approver sees the request with its buttons; a non-approver sees nobody else's.
    approver = await open_home(bed, "U0PL1")
    assert buttons(approver["blocks"]).get("access_approve") == [pending.id]
    assert buttons(approver["blocks"]).get("access_deny") == [pending.id]
    stranger = await open_home(bed, "U0BOB")
    assert pending.id not in json.dumps(stranger)
    # ...and their own live grant, with Revoke and Extend.
    assert buttons(stranger["blocks"]).get("access_revoke") == [live.id]
    assert buttons(stranger["blocks"]).get("access_extend") == [live.id]

    # Revoke from Home: the grant ends and the Home is redrawn without it.
    seen = publishes_to(bed, "U0BOB")
    await click_in_home(bed, "access_revoke", live.id, "U0BOB", stranger)
    await bed.wait_grant(live.id, State.REVOKED)
    redrawn = await home_of(bed, "U0BOB", seen)
    assert live.id not in json.dumps(redrawn)
    await once(bed, "U0BOB", "was revoked by <@U0BOB>")

    # Deny from Home: the form opens, and its submission redraws the approver's Home.
    await click_in_home(bed, "access_deny", pending.id, "U0PL1", approver)
    (opened,) = await bed.emu.wait_for("views.open")
    seen = publishes_to(bed, "U0PL1")
    values = {"reason": {"value": text_input("wrong namespace")}}
    metadata = opened.params["view"]["private_metadata"]
    await bed.submit("access_deny_modal", values, "U0PL1", metadata)
    await bed.wait_grant(pending.id, State.DENIED)
    after = await home_of(bed, "U0PL1", seen)
    assert pending.id not in json.dumps(after)
    await once(bed, "U0ALICE", "was denied by <@U0PL1>")


async def test_approving_from_home_is_still_authorized(bed: SlackBed) -> None:
    pending = await bed.request("request edit -n team-a -d 1h fixing", "U0ALICE")
    await bed.wait_card(pending.id)
    approver = await open_home(bed, "U0PL1")
    # A forged click by someone who may not approve is refused server-side.
    await click_in_home(bed, "access_approve", pending.id, "U0BOB", approver)
    await bed.wait_dm("U0BOB", "not an approver for role edit")
    await bed.settled()
    assert (await bed.core.store.get(pending.id)).state == State.PENDING  # type: ignore[union-attr]
    seen = publishes_to(bed, "U0PL1")
    await click_in_home(bed, "access_approve", pending.id, "U0PL1", approver)
    await bed.wait_grant(pending.id, State.APPROVED, State.PROVISIONING, State.ACTIVE)
    redrawn = await home_of(bed, "U0PL1", seen)
    assert pending.id not in json.dumps(redrawn)
    await once(bed, "U0ALICE", "was approved by <@U0PL1>")
