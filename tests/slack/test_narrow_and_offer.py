"""Issue 15, items 3 and 4, end to end: signed Slack requests in, the Slack emulator
out, real Redis and real apiservers.

Approve with changes: the narrowed grant is what the cluster gets (token lifetime,
RoleBinding namespace), the requester is told what changed and by whom, anything
wider than asked is refused, and only approvers may narrow. A request for access
already held becomes an offer to extend it (one grant, never two), and every
extension path follows the role's ``max_extensions`` and ``extend_after``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml

from bot.errors import NotAllowed
from bot.lifecycle import State
from bot.models import Grant
from bot.narrowing import NarrowingAsk
from bot.policy import RequestRejected
from bot.store import Change
from tests.slack.support import (
    APPROVALS,
    POLICY,
    SlackBed,
    blocks_text,
    slack_bed,
    values_for_request,
)
from tests.slack.test_flows import buttons
from tests.support.cluster import TestCluster
from tests.support.harness import wait_for_grant
from tests.support.patience import PATIENCE
from tests.support.slack_signing import static_select, text_input

pytestmark = pytest.mark.cluster

# The shared test policy, plus a role whose extensions are limited.
RULES_POLICY = POLICY.replace(
    "defaults:",
    "  logs: {cluster_role: view, scope: namespace, max_duration: 8h, approvals: 0,\n"
    '         namespaces: ["team-*"], clusters: [a], max_extensions: 1, extend_after: 0.5}\n'
    "defaults:",
)


@pytest.fixture
async def bed(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> AsyncIterator[SlackBed]:
    async with slack_bed(
        redis_url, {"a": cluster, "b": cluster_b}, tmp_path, policy_text=RULES_POLICY
    ) as b:
        yield b


async def pending_edit(bed: SlackBed, text: str = "request edit -n team-a -d 2h fix") -> Grant:
    grant = await bed.request(text, "U0ALICE")
    await bed.wait_card(grant.id)
    return grant


async def open_narrow_form(bed: SlackBed, grant_id: str, user: str) -> dict[str, Any]:
    opened = len(bed.emu.calls_to("views.open"))
    await bed.click("access_approve_narrow", grant_id, user, bed.card_for(grant_id), APPROVALS)
    calls = await bed.emu.wait_for("views.open", opened + 1)
    view = calls[-1].params["view"]
    assert view["callback_id"] == "access_narrow_modal"
    return dict(view)


async def submit_narrow(bed: SlackBed, grant_id: str, user: str, values: dict[str, Any]) -> Any:
    metadata = json.dumps({"grant": grant_id})
    return (await bed.submit("access_narrow_modal", values, user, metadata)).json()


def duration(value: str) -> dict[str, Any]:
    return {"duration": {"value": text_input(value)}}


def claims_of(kubeconfig: bytes) -> dict[str, Any]:
    token = yaml.safe_load(kubeconfig)["users"][0]["user"]["token"]
    return dict(jwt.decode(token, options={"verify_signature": False}))


async def wait_for(bed: SlackBed, grant_id: str, ok: Any) -> Grant:
    return await wait_for_grant(bed.core, grant_id, ok, PATIENCE)


async def backdate(bed: SlackBed, grant_id: str, by: dt.timedelta) -> None:
    """Move the grant's history and expiry ``by`` into the past, as if it began earlier.

    The bot's clock stays the real one: the cluster mints tokens against real time.
    """

    def earlier(g: Grant) -> Change:
        assert g.expires_at is not None
        history = tuple(s.model_copy(update={"at": s.at - by}) for s in g.history)
        return Change(g.model_copy(update={
            "history": history, "expires_at": g.expires_at - by, "created_at": g.created_at - by,
        }))  # fmt: skip

    assert await bed.core.store.update(grant_id, earlier) is not None


def lasts(claims: dict[str, Any], seconds: int) -> bool:
    """The token's lifetime is ``seconds`` (give or take the second it was minted in)."""
    return abs(claims["exp"] - claims["iat"] - seconds) <= 2


# -- approve with changes -------------------------------------------------------------


async def test_a_narrowed_approval_makes_the_narrower_grant_and_tells_the_requester(
    bed: SlackBed, cluster: TestCluster
) -> None:
    grant = await pending_edit(bed)
    view = await open_narrow_form(bed, grant.id, "U0LEAD")
    shown = json.dumps(view)
    assert "2h" in shown
    assert "nothing narrower to pick" in shown  # one namespace asked: nothing narrower

    assert await submit_narrow(bed, grant.id, "U0LEAD", duration("30m")) is None
    active = await bed.wait_grant(grant.id, State.ACTIVE)
    assert (active.duration_s, active.namespace, active.approvals) == (1800, "team-a", ("U0LEAD",))

    # The cluster got the narrowed grant: a token for 30 minutes, a RoleBinding in team-a.
    (upload,) = bed.emu.uploaded_files
    claims = claims_of(upload.content or b"")
    assert lasts(claims, 1800)
    assert active.expires_at is not None
    assert abs(claims["exp"] - active.expires_at.timestamp()) <= 2
    found = await asyncio.to_thread(
        cluster.kubectl, "get", "rolebindings", "-A", "-o", "json",
        "-l", f"accessbot.io/grant-id={grant.id}",
    )  # fmt: skip
    (binding,) = json.loads(found.stdout)["items"]
    assert binding["metadata"]["namespace"] == "team-a"

    # The requester heard what changed and by whom; the card shows the narrowed values.
    dm = await bed.wait_dm("U0ALICE", "with changes")
    assert "<@U0LEAD>" in blocks_text(dm)
    assert "duration 2h → 30m" in blocks_text(dm)
    card = await bed.wait_card(grant.id, lambda m: "access is active" in blocks_text(m))
    assert "Narrowed by <@U0LEAD>: duration 2h → 30m" in blocks_text(card)
    assert "*Duration*\\n30m" in blocks_text(card)
    narrowed = [e for e in await bed.core.store.audit_tail(200)
                if e["grant_id"] == grant.id and e["event"] == "narrowed"]  # fmt: skip
    assert len(narrowed) == 1
    assert narrowed[0]["actor"] == "U0LEAD"
    assert "duration 2h → 30m" in narrowed[0]["reason"]


async def test_a_tampered_wider_submission_is_refused(bed: SlackBed) -> None:
    grant = await pending_edit(bed)
    await open_narrow_form(bed, grant.id, "U0LEAD")
    wider = [
        duration("3h"),
        duration("0m"),
        {**duration("1h"), "namespace": {"value": text_input("team-b")}},
        {**duration("1h"), "namespace": {"value": static_select("kube-system")}},
        {**duration("1h"), "cluster": {"access_modal_cluster": static_select("b")}},
        {**duration("1h"), "role-a": {"value": static_select("view")}},
    ]
    for values in wider:
        answer = await submit_narrow(bed, grant.id, "U0LEAD", values)
        assert answer["response_action"] == "errors", values
        assert set(answer["errors"]) == {"duration"}
    answer = await submit_narrow(bed, grant.id, "U0LEAD", duration("3h"))
    assert "longer than the 2h asked for" in answer["errors"]["duration"]

    # The use case refuses the same on its own, whatever reached it.
    workflow = bed.core.workflow
    for ask in (
        NarrowingAsk(duration=dt.timedelta(hours=3)),
        NarrowingAsk(namespace="team-b"),
        NarrowingAsk(cluster="b"),
        NarrowingAsk(role="cluster-admin"),
    ):
        with pytest.raises(RequestRejected):
            await workflow.approve_narrowed(grant.id, "U0LEAD", ask)
    stored = await workflow.get(grant.id)
    assert (stored.state, stored.duration_s, stored.namespace, stored.approvals) == (
        State.PENDING, 7200, "team-a", (),
    )  # fmt: skip


async def test_only_approvers_may_narrow(bed: SlackBed) -> None:
    grant = await pending_edit(bed)
    card = bed.card_for(grant.id)
    await bed.click("access_approve_narrow", grant.id, "U0BOB", card, APPROVALS)
    await bed.wait_response("not an approver")
    await bed.click("access_approve_narrow", grant.id, "U0ALICE", card, APPROVALS)
    await bed.wait_response("own request")
    assert bed.emu.calls_to("views.open") == []

    # A submission without the form (or after losing the right) is refused on the form,
    # before it is read.
    assert "not an approver" in json.dumps(
        await submit_narrow(bed, grant.id, "U0BOB", duration("1h"))
    )
    assert "own request" in json.dumps(
        await submit_narrow(bed, grant.id, "U0ALICE", duration("1h"))
    )
    await bed.core.workflow.offboard("U0PL1", "U0ADMIN", "left")
    # The offboarding gate answers before any listener; the use case refuses as well.
    refusal = await submit_narrow(bed, grant.id, "U0PL1", duration("1h"))
    assert "offboarded" in json.dumps(refusal)
    with pytest.raises(NotAllowed):
        await bed.core.workflow.approve_narrowed(grant.id, "U0PL1", NarrowingAsk())

    await bed.settled()
    stored = await bed.core.workflow.get(grant.id)
    assert (stored.state, stored.duration_s, stored.approvals) == (State.PENDING, 7200, ())
    refused = [e for e in await bed.core.store.audit_tail(200) if e["event"] == "refused"]
    assert {(e["actor"], e["reason"].split(":")[0]) for e in refused} >= {
        ("U0BOB", "approve with changes"),
        ("U0ALICE", "approve with changes"),
        ("U0PL1", "approve with changes"),
    }


async def test_with_two_approvals_the_narrowed_values_stand(bed: SlackBed) -> None:
    grant = await bed.request("request cluster-admin -c b -d 1h outage", "U0ALICE")
    await bed.wait_card(grant.id)
    await open_narrow_form(bed, grant.id, "U0LEAD")
    assert await submit_narrow(bed, grant.id, "U0LEAD", duration("20m")) is None
    narrowed = await wait_for(bed, grant.id, lambda g: g.approvals == ("U0LEAD",))
    assert (narrowed.state, narrowed.duration_s) == (State.PENDING, 1200)
    card = await bed.wait_card(grant.id, lambda m: "Narrowed by" in blocks_text(m))
    assert "later approvals approve them" in blocks_text(card)
    assert "1 of 2" in blocks_text(card)
    dm = await bed.wait_dm("U0ALICE", "still needs 1 more approval")
    assert "duration 1h → 20m" in blocks_text(dm)

    # A form opened before the narrowing cannot widen it back.
    answer = await submit_narrow(bed, grant.id, "U0BOSS", duration("1h"))
    assert "longer than the 20m asked for" in answer["errors"]["duration"]
    await bed.click("access_approve", grant.id, "U0BOSS", bed.card_for(grant.id), APPROVALS)
    active = await bed.wait_grant(grant.id, State.ACTIVE)
    assert active.duration_s == 1200
    assert active.expires_at is not None
    claims = claims_of(bed.emu.uploaded_files[-1].content or b"")
    assert lasts(claims, 1200)


# -- a request for access already held ----------------------------------------------------


async def test_a_duplicate_request_offers_to_extend_and_makes_one_grant(bed: SlackBed) -> None:
    first = await bed.request("request view -c a -n team-a -d 1h reading", "U0ALICE")
    active = await bed.wait_grant(first.id, State.ACTIVE)
    assert active.expires_at is not None

    await bed.command("request view -c a -n team-a -d 30m reading again", "U0ALICE")
    offer = await bed.wait_response("You already hold")
    message = {"ts": "0", "blocks": offer.params["blocks"]}
    assert buttons(message) == {"access_extend_existing": first.id, "access_offer_cancel": first.id}
    assert "Extend by 30m" in json.dumps(offer.params)
    assert len(await bed.core.store.by_user("U0ALICE")) == 1  # exactly one grant

    # Someone else cannot take it; the owner's click extends by the offered 30m, once.
    dm = bed.emu.dm_channel("U0ALICE")
    await bed.click("access_extend_existing", first.id, "U0BOB", message, dm)
    await bed.wait_response("grant's owner can take an offer")
    await bed.click("access_extend_existing", first.id, "U0ALICE", message, dm)
    await bed.wait_response("is extended")
    extended = await bed.core.workflow.get(first.id)
    assert extended.expires_at == active.expires_at + dt.timedelta(minutes=30)
    await bed.click("access_extend_existing", first.id, "U0ALICE", message, dm)
    await bed.wait_response("no extension offer pending")
    assert (await bed.core.workflow.get(first.id)).expires_at == extended.expires_at

    # The request form answers the same way, in a DM; Cancel withdraws the offer.
    again = values_for_request(
        cluster="a", role="view", namespace="team-a", duration="15m", reason="more reading"
    )
    assert (await bed.submit("access_request_modal", again, "U0ALICE")).text == ""
    offered = await bed.wait_dm("U0ALICE", "Extend by 15m")
    await bed.click("access_offer_cancel", first.id, "U0ALICE", offered, dm)
    await bed.wait_response("stays as it is")
    await bed.click("access_extend_existing", first.id, "U0ALICE", offered, dm)
    await bed.wait_response("no extension offer pending")
    await bed.settled()
    assert len(await bed.core.store.by_user("U0ALICE")) == 1
    assert (await bed.core.workflow.get(first.id)).expires_at == extended.expires_at
    events = [e["event"] for e in await bed.core.store.audit_tail(300) if e["grant_id"] == first.id]
    assert events.count("extension_offered") == 2
    assert events.count("extended") == 1


async def test_the_offer_of_an_approved_role_goes_to_the_approvers(bed: SlackBed) -> None:
    grant = await pending_edit(bed, "request edit -n team-a -d 1h fix")
    await bed.click("access_approve", grant.id, "U0LEAD", bed.card_for(grant.id), APPROVALS)
    await bed.wait_grant(grant.id, State.ACTIVE)
    await bed.command("request edit -n team-a -d 1h still fixing", "U0ALICE")
    offer = await bed.wait_response("Extend by 1h")
    message = {"ts": "0", "blocks": offer.params["blocks"]}
    await bed.click("access_extend_existing", grant.id, "U0ALICE", message, APPROVALS)
    await bed.wait_response("went to the approvers")
    (request,) = [g for g in await bed.core.store.by_user("U0ALICE") if g.kind == "extend"]
    assert (request.extends, request.duration_s) == (grant.id, 3600)
    access = [g for g in await bed.core.store.by_user("U0ALICE") if g.kind == "access"]
    assert [g.id for g in access] == [grant.id]

    # An approver shortens the extension: the grant gets the narrowed time only.
    before = await bed.core.workflow.get(grant.id)
    assert before.expires_at is not None
    await bed.wait_card(request.id)
    view = await open_narrow_form(bed, request.id, "U0PL1")
    assert "Extend by" in json.dumps(view)
    assert await submit_narrow(bed, request.id, "U0PL1", duration("20m")) is None
    await bed.wait_grant(request.id, State.APPLIED)
    after = await bed.core.workflow.get(grant.id)
    assert after.expires_at == before.expires_at + dt.timedelta(minutes=20)
    await bed.wait_dm("U0ALICE", "with changes: extend by 1h")


async def test_max_extensions_and_extend_after_on_every_path(bed: SlackBed) -> None:
    grant = await bed.request("request logs -n team-a -d 1h reading", "U0ALICE")
    active = await bed.wait_grant(grant.id, State.ACTIVE)
    assert active.expires_at is not None
    dm = bed.emu.dm_channel("U0ALICE")
    access_dm = await bed.wait_dm("U0ALICE", "export KUBECONFIG")

    # Too early: the command, the Extend button and the offer each say from when.
    await bed.command(f"extend {grant.id} -d 30m", "U0ALICE")
    await bed.wait_response("once 50% of the grant has passed")
    await bed.click("access_extend", grant.id, "U0ALICE", access_dm, dm)
    await bed.wait_response("once 50% of the grant has passed")
    assert bed.emu.calls_to("views.open") == []
    await bed.command("request logs -n team-a -d 30m reading", "U0ALICE")
    early = await bed.wait_response("cannot be extended now")
    assert "once 50% of the grant has passed" in json.dumps(early.params)
    assert buttons({"blocks": early.params["blocks"]}) == {}

    # Half-way through the extension is allowed, once: the grant began 35 minutes ago.
    await backdate(bed, grant.id, dt.timedelta(minutes=35))
    active = await bed.core.workflow.get(grant.id)
    assert active.expires_at is not None
    await bed.command(f"extend {grant.id} -d 30m", "U0ALICE")
    await bed.wait_response("is extended")
    await bed.command(f"extend {grant.id} -d 30m", "U0ALICE")
    await bed.wait_response("the most role logs allows")
    await bed.click("access_extend", grant.id, "U0ALICE", access_dm, dm)
    await bed.wait_response("the most role logs allows")
    metadata = json.dumps({"grant": grant.id})
    form = await bed.submit("access_extend_modal", duration("15m"), "U0ALICE", metadata)
    assert "the most role logs allows" in form.json()["errors"]["duration"]
    await bed.command("request logs -n team-a -d 30m reading", "U0ALICE")
    late = await bed.wait_response("cannot be extended now")
    assert "max_extensions: 1" in json.dumps(late.params)
    await bed.settled()
    stored = await bed.core.workflow.get(grant.id)
    assert len(stored.extensions) == 1
    assert stored.expires_at == active.expires_at + dt.timedelta(minutes=30)
    assert len(await bed.core.store.by_user("U0ALICE")) == 1
    assert bed.emu.calls_to("views.open") == []


async def test_a_narrowed_approval_is_told_as_an_approval_and_never_audited_as_refused(
    bed: SlackBed,
) -> None:
    """Approved (one approval) and recorded (two needed): the approver hears it counted,
    and the audit holds the narrowing, never a refusal."""
    one = await bed.request("request edit -n team-a -d 2h fix", "U0ALICE")
    await bed.wait_card(one.id)
    await bed.submit(
        "access_narrow_modal", duration("30m"), "U0LEAD", json.dumps({"grant": one.id})
    )
    await bed.wait_grant(one.id, State.ACTIVE)
    two = await bed.request("request cluster-admin -c b -d 1h outage", "U0ALICE")
    await bed.wait_card(two.id)
    await bed.submit(
        "access_narrow_modal", duration("30m"), "U0LEAD", json.dumps({"grant": two.id})
    )
    await bed.settled()
    assert (await bed.core.workflow.get(two.id)).approvals == ("U0LEAD",)
    refused = [e for e in await bed.core.store.audit_tail(500)
               if e["event"] == "refused" and e["actor"] == "U0LEAD"]  # fmt: skip
    assert refused == []
    told = [m.get("text") or "" for m in bed.dm("U0LEAD")]
    assert not any("Nothing was changed" in t for t in told), told


async def test_two_extensions_approved_at_once_both_apply(bed: SlackBed) -> None:
    """Each is judged again from the end the other set: neither is lost, nor failed
    with a false reason."""
    g = await bed.request("request edit -n team-a -d 1h fix", "U0ALICE")
    await bed.wait_card(g.id)
    await bed.click("access_approve", g.id, "U0LEAD", bed.card_for(g.id), APPROVALS)
    active = await bed.wait_grant(g.id, State.ACTIVE)
    await bed.command(f"extend {g.id} -d 30m", "U0ALICE")
    await bed.command(f"extend {g.id} -d 20m", "U0ALICE")
    await bed.settled()
    asked = [x for x in await bed.core.store.by_user("U0ALICE") if x.kind == "extend"]
    assert len(asked) == 2
    for x in asked:
        await bed.wait_card(x.id)
    await asyncio.gather(
        *(bed.click("access_approve", x.id, "U0LEAD", bed.card_for(x.id), APPROVALS) for x in asked)
    )
    await bed.settled()
    done = [await bed.core.workflow.get(x.id) for x in asked]
    assert [x.state for x in done] == [State.APPLIED, State.APPLIED], [x.failure for x in done]
    extended = await bed.core.workflow.get(g.id)
    assert len(extended.extensions) == 2
    assert active.expires_at is not None
    assert extended.expires_at is not None
    assert extended.expires_at - active.expires_at >= dt.timedelta(minutes=49)


async def test_a_form_from_a_non_approver_is_refused_before_it_is_read(bed: SlackBed) -> None:
    """Authority is checked before the form: a forged submission learns nothing of the
    request (not what was asked), and the refusal is audited."""
    g = await bed.request("request edit -n team-a -d 2h fix", "U0ALICE")
    await bed.wait_card(g.id)
    reply = await bed.submit(
        "access_narrow_modal", duration("9h"), "U0BOB", json.dumps({"grant": g.id})
    )
    assert "2h" not in reply.text
    assert "approver" in reply.text
    await bed.settled()
    refused = [e for e in await bed.core.store.audit_tail(200)
               if e["event"] == "refused" and e["actor"] == "U0BOB"]  # fmt: skip
    assert len(refused) == 1
    assert (await bed.core.workflow.get(g.id)).state == State.PENDING
