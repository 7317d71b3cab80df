"""In Slack, an offboarded person is refused everything, clearly and on the record;
and an extension shows up in the audit channel."""

from __future__ import annotations

import json

import pytest

from bot.lifecycle import State
from tests.slack.support import APPROVALS, AUDIT, SlackBed, values_for_request
from tests.slack.test_flows import request_edit

pytestmark = pytest.mark.cluster


async def refused(bed: SlackBed, user: str) -> list[dict[str, str]]:
    return [
        e
        for e in await bed.core.store.audit_tail(500)
        if e["event"] == "refused" and e["actor"] == user
    ]


async def test_offboarded_admin_is_refused_everything(bed: SlackBed) -> None:
    await bed.command("request view -c a -n team-a -d 1h reading", "U0BOB")
    bobs = await bed.only_grant("U0BOB")
    await bed.wait_grant(bobs.id, State.ACTIVE)
    await bed.core.workflow.offboard("U0ADMIN", "hr-webhook", "left")

    for text, command in (
        ("list --all", "/access"),
        (f"revoke {bobs.id}", "/access"),
        ("help", "/access"),
        ("", "/access"),
        ("nodes", "/k8s"),
        ("standing -c a", "/k8s"),
    ):
        reply = (await bed.command(text, "U0ADMIN", command=command)).json()
        assert reply["response_type"] == "ephemeral"
        assert "You were offboarded" in json.dumps(reply)

    card = bed.dm("U0BOB")[-1]
    dm = bed.emu.dm_channel("U0BOB")
    assert (await bed.click("access_revoke", bobs.id, "U0ADMIN", card, dm)).status == 200
    await bed.wait_dm("U0ADMIN", "You were offboarded")

    values = values_for_request(
        cluster="a", role="view", namespace="team-a", duration="1h", reason="x"
    )
    answer = (await bed.submit("access_request_modal", values, "U0ADMIN")).json()
    assert answer["response_action"] == "update"
    assert "You were offboarded" in json.dumps(answer["view"])

    # Every delivery handled to its end and no job left to run: anything let through
    # would have acted by now.
    await bed.settled()
    assert (await bed.core.store.get(bobs.id)).state == State.ACTIVE  # type: ignore[union-attr]
    assert await bed.core.store.by_user("U0ADMIN") == []
    assert bed.emu.calls_to("views.open") == []
    assert len(await refused(bed, "U0ADMIN")) == 8


async def test_offboarded_approvers_click_does_not_approve(bed: SlackBed) -> None:
    grant_id = await request_edit(bed)
    await bed.core.workflow.offboard("U0LEAD", "hr-webhook", "left")
    card = bed.card_for(grant_id)
    # Every button of the card: approve, deny, and the one that opens the narrowing form.
    for action in ("access_approve", "access_deny", "access_approve_narrow"):
        assert (await bed.click(action, grant_id, "U0LEAD", card, APPROVALS)).status == 200
    await bed.wait_dm("U0LEAD", "You were offboarded")
    await bed.settled()  # a click let through would have approved (and provisioned) by now
    grant = await bed.core.store.get(grant_id)
    assert grant is not None
    assert (grant.state, grant.approvals) == (State.PENDING, ())
    assert bed.emu.calls_to("views.open") == []
    assert len(await refused(bed, "U0LEAD")) == 3


async def test_extension_is_posted_to_the_audit_channel(bed: SlackBed) -> None:
    await bed.command("request view -c a -n team-a -d 1h reading", "U0ALICE")
    grant = await bed.only_grant("U0ALICE")
    await bed.wait_grant(grant.id, State.ACTIVE)
    await bed.command(f"extend {grant.id} -d 30m", "U0ALICE")
    await bed.wait_response("is extended")
    await bed.emu.wait_for(
        "chat.postMessage",
        timeout=30,
        predicate=lambda c: (
            c.params.get("channel") == AUDIT and "extended by 30m" in json.dumps(c.params)
        ),
    )
