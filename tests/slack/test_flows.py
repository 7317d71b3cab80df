"""The Slack app end to end: signed HTTP requests in, the Slack emulator out,
real Redis and real apiservers behind the workflow."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from bot.lifecycle import State
from tests.slack.support import (
    APPROVALS,
    POLICY,
    SlackBed,
    blocks_text,
    slack_bed,
    values_for_request,
)
from tests.support.cluster import TestCluster
from tests.support.patience import PATIENCE
from tests.support.slack_emulator import RESPONSE_URL, UPLOAD_URL, RecordedCall
from tests.support.slack_signing import slash_command_body, static_select, text_input

pytestmark = pytest.mark.cluster


def buttons(message: dict) -> dict[str, str]:
    """action_id -> value of every button in a message."""
    found: dict[str, str] = {}
    for block in message.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("type") == "button":
                found[element["action_id"]] = element["value"]
    return found


async def request_edit(bed: SlackBed, user: str = "U0ALICE", text: str = "fixing checkout") -> str:
    """Request edit access and wait until the card of *this* request is posted.

    Not "a card in the approvals channel": an earlier request's card is already there,
    and this one's may still be on its way on a busy machine.
    """
    grant = await bed.request(f"request edit -n team-a -d 2h {text}", user)
    await bed.wait_card(grant.id)
    return grant.id


async def test_request_approve_and_use_the_kubeconfig(
    bed: SlackBed, cluster: TestCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for ours in ("bot", "k8s"):
        caplog.set_level(logging.DEBUG, logger=ours)
    grant_id = await request_edit(bed)
    card = bed.card_for(grant_id)
    assert buttons(card) == {
        "access_approve": grant_id,
        "access_approve_narrow": grant_id,
        "access_deny": grant_id,
    }
    shown = blocks_text(card)
    for fact in ("U0ALICE", "team-a", "edit", "2h", "fixing checkout", "0 of 1"):
        assert fact in shown
    await bed.wait_response(grant_id)  # the requester was told where the request went

    await bed.click("access_approve", grant_id, "U0LEAD", card, APPROVALS)
    active = await bed.wait_grant(grant_id, State.ACTIVE)
    assert active.approvals == ("U0LEAD",)

    # The card was updated in place: same ts, no buttons left, the approver named.
    updated = await bed.wait_card(grant_id, lambda m: "access is active" in blocks_text(m))
    assert updated["ts"] == card["ts"]
    assert buttons(updated) == {}
    assert "U0LEAD" in blocks_text(updated)

    # The DM has the file, and a message with usage, expiry and the two buttons.
    (upload,) = bed.emu.uploaded_files
    assert upload.filename == "a-edit.kubeconfig"
    assert upload.channel_id == bed.emu.dm_channel("U0ALICE")
    active_dm = await bed.wait_dm("U0ALICE", "export KUBECONFIG")
    assert buttons(active_dm) == {"access_revoke": grant_id, "access_extend": grant_id}
    assert "<!date^" in blocks_text(active_dm)

    kubeconfig = tmp_path / upload.filename
    kubeconfig.write_bytes(upload.content or b"")
    ok = await asyncio.to_thread(cluster.kubectl, "get", "pods", kubeconfig=kubeconfig)
    assert ok.returncode == 0
    other = await asyncio.to_thread(
        cluster.kubectl, "get", "pods", "-n", "team-b", kubeconfig=kubeconfig, check=False
    )
    assert "Forbidden" in other.stderr

    # The audit channel saw every step (and then the token check below sees its posts too).
    await bed.wait_audit("requested", "approved", "provisioning", "active")

    # The token is in the file and nowhere else that Slack stored.
    token = _token(upload.content or b"")
    everything = json.dumps([c.params for c in bed.emu.calls if c.method != UPLOAD_URL])
    assert token not in everything
    # ...nor in the audit stream or any line the bot logged, at any level.
    assert token not in json.dumps(await bed.core.store.audit_tail(1000))
    assert caplog.records
    assert token not in caplog.text


def _token(content: bytes) -> str:
    import yaml

    doc = yaml.safe_load(content)
    token = doc["users"][0]["user"]["token"]
    assert isinstance(token, str)
    assert len(token) > 20
    return token


async def test_requester_cannot_approve_their_own_request(bed: SlackBed) -> None:
    grant_id = await request_edit(bed)
    card = bed.card_for(grant_id)
    updates_before = len(bed.emu.calls_to("chat.update"))

    reply = await bed.click("access_approve", grant_id, "U0ALICE", card, APPROVALS)
    assert reply.status == 200
    refusal = await bed.wait_response("own request")
    assert refusal.params["response_type"] == "ephemeral"
    assert refusal.params["replace_original"] is False

    # Someone who is no approver at all is refused the same way.
    await bed.click("access_approve", grant_id, "U0BOB", card, APPROVALS)
    await bed.wait_response("not an approver")
    await bed.click("access_deny", grant_id, "U0BOB", card, APPROVALS)
    await bed.wait_response("You are not an approver for role edit")

    # Each refusal above was answered, so its handler has finished: nothing is pending.
    grant = await bed.core.store.get(grant_id)
    assert grant is not None
    assert grant.state == State.PENDING
    assert grant.approvals == ()
    assert len(bed.emu.calls_to("chat.update")) == updates_before
    assert bed.emu.calls_to("views.open") == []


async def test_refusals_are_audited(bed: SlackBed) -> None:
    grant_id = await request_edit(bed)
    await bed.click("access_approve", grant_id, "U0ALICE", bed.card_for(grant_id), APPROVALS)
    await bed.wait_response("own request")
    refused = [e for e in await bed.core.store.audit_tail(100) if e["event"] == "refused"]
    assert len(refused) == 1
    assert refused[0]["actor"] == "U0ALICE"
    assert refused[0]["grant_id"] == grant_id
    assert refused[0]["reason"] == "approve: you cannot approve or deny your own request"


async def test_deny_asks_for_a_reason_and_tells_the_requester(bed: SlackBed) -> None:
    grant_id = await request_edit(bed)
    card = bed.card_for(grant_id)
    await bed.click("access_deny", grant_id, "U0PL1", card, APPROVALS)
    (opened,) = await bed.emu.wait_for("views.open")
    modal = opened.params["view"]
    assert modal["callback_id"] == "access_deny_modal"

    values = {"reason": {"value": text_input("use the read-only role")}}
    reply = await bed.submit("access_deny_modal", values, "U0PL1", modal["private_metadata"])
    assert reply.status == 200
    assert reply.text == ""
    denied = await bed.wait_grant(grant_id, State.DENIED)
    assert denied.denied_by == "U0PL1"
    dm = await bed.wait_dm("U0ALICE", "was denied")
    assert "use the read-only role" in blocks_text(dm)
    final = await bed.wait_card(grant_id, lambda m: "Denied by" in blocks_text(m))
    assert buttons(final) == {}


async def test_modal_path(bed: SlackBed) -> None:
    reply = await bed.command("", "U0ALICE")
    assert reply.status == 200
    (opened,) = await bed.emu.wait_for("views.open")
    view = opened.params["view"]
    assert view["callback_id"] == "access_request_modal"
    blocks = {b["block_id"]: b for b in view["blocks"]}
    clusters = [o["value"] for o in blocks["cluster"]["element"]["options"]]
    assert clusters == ["a", "b"]
    roles_on_a = [o["value"] for o in blocks["role-a"]["element"]["options"]]
    assert roles_on_a == ["view", "edit"]  # cluster-admin is on b only

    # Picking cluster b offers b's roles.
    view_id = bed.emu.views and next(iter(bed.emu.views))
    await _pick_cluster(bed, view_id, "b")
    (updated,) = await bed.emu.wait_for("views.update")
    roles_on_b = [
        o["value"]
        for b in updated.params["view"]["blocks"]
        if b["block_id"] == "role-b"
        for o in b["element"]["options"]
    ]
    assert roles_on_b == ["view", "cluster-admin"]

    too_long = values_for_request(
        cluster="a", role="edit", namespace="team-a", duration="5h", reason="deploy"
    )
    reply = await bed.submit("access_request_modal", too_long, "U0ALICE")
    answer = reply.json()
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {"duration"}
    assert "4h maximum" in answer["errors"]["duration"]
    assert await bed.core.store.by_user("U0ALICE") == []

    bad_ns = values_for_request(
        cluster="a", role="edit", namespace="kube-system", duration="1h", reason="deploy"
    )
    answer = (await bed.submit("access_request_modal", bad_ns, "U0ALICE")).json()
    assert set(answer["errors"]) == {"namespace"}
    assert answer["errors"]["namespace"].startswith("Namespace kube-system is protected: ")

    good = values_for_request(
        cluster="a", role="edit", namespace="team-a", duration="3h", reason="deploy"
    )
    reply = await bed.submit("access_request_modal", good, "U0ALICE")
    assert reply.status == 200
    assert reply.text == ""
    grant = await bed.only_grant("U0ALICE")
    assert (grant.role, grant.cluster, grant.namespace, grant.duration_s) == (
        "edit",
        "a",
        "team-a",
        3 * 3600,
    )
    await bed.wait_card(grant.id)


async def _pick_cluster(bed: SlackBed, view_id: str, cluster: str) -> None:
    from tests.support.slack_signing import _payload_form  # the same form encoding

    view = bed.emu.views[view_id]
    payload = {
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice", "name": "alice", "team_id": "T0ACME"},
        "api_app_id": "A0ACCESSBOT",
        "token": "legacy-verification-token",
        "container": {"type": "view", "view_id": view_id},
        "trigger_id": "1.2.3",
        "team": {"id": "T0ACME", "domain": "acme"},
        "view": view,
        "actions": [
            {
                "type": "static_select",
                "action_id": "access_modal_cluster",
                "block_id": "cluster",
                "selected_option": static_select(cluster)["selected_option"],
                "action_ts": "1.0",
            }
        ],
    }
    await bed.post(_payload_form(payload))


async def test_signature_checks(bed: SlackBed) -> None:
    body = slash_command_body(
        "/access",
        "request edit -c a -n team-a fix",
        "U0ALICE",
        response_url=bed.emu.new_response_url(),
    )
    forged = await bed.post(body, secret="not-the-secret")
    stale = await bed.post(body, timestamp=int(time.time()) - 301)
    tampered_headers = {"X-Slack-Signature": "v0=" + "0" * 64}
    tampered = await bed.post(body, headers=tampered_headers)
    assert (forged.status, stale.status, tampered.status) == (401, 401, 401)
    # A signed command sent after them is answered: the app has worked through the
    # rejected ones by then, so anything they set off would be recorded.
    await bed.command("list", "U0BOB")
    await bed.wait_response("no grants")
    assert await bed.core.store.by_user("U0ALICE") == []
    assert [c.method for c in bed.emu.calls if c.method != "auth.test"] == [RESPONSE_URL]


HOSTILE = "<!channel> *bold* <https://evil.example|click>"


async def test_hostile_reason_shows_literally_everywhere(bed: SlackBed) -> None:
    grant_id = await request_edit(bed, text=HOSTILE)
    grant = await bed.core.store.get(grant_id)
    assert grant is not None
    assert grant.reason == HOSTILE

    card = bed.card_for(grant_id)
    await bed.command("list", "U0ALICE")
    await bed.click("access_approve", grant_id, "U0LEAD", card, APPROVALS)
    await bed.wait_grant(grant_id, State.ACTIVE)
    await bed.event({"type": "app_home_opened", "user": "U0ALICE", "channel": "D0", "tab": "home"})
    await bed.emu.wait_for("views.publish", predicate=lambda c: _home_of(c, "U0ALICE", grant_id))
    # An approver's Home shows waiting requests with their reasons.
    second = await request_edit(bed, user="U0BOB", text=HOSTILE)
    await bed.event({"type": "app_home_opened", "user": "U0LEAD", "channel": "D1", "tab": "home"})
    await bed.emu.wait_for("views.publish", predicate=lambda c: _home_of(c, "U0LEAD", second))
    await bed.click("access_deny", second, "U0LEAD", bed.card_for(second), APPROVALS)
    await bed.emu.wait_for("views.open", predicate=lambda c: second in json.dumps(c.params))
    await bed.wait_dm("U0ALICE", "export KUBECONFIG")

    escaped = "&lt;!channel&gt; *bold* &lt;https://evil.example|click&gt;"
    seen = 0
    for method, stored in bed.all_stored_text():
        for obj in _text_objects(stored):
            text = obj.get("text", "")
            assert "<!channel>" not in text, (method, obj)
            assert "<https://evil" not in text, (method, obj)
            if "evil.example" in text:
                seen += 1
                assert escaped in text, (method, obj)
                # plain_text: Slack applies no formatting, so *bold* stays literal.
                assert obj.get("type") == "plain_text", (method, obj)
        fallback = stored.get("text") if isinstance(stored, dict) else None
        if isinstance(fallback, str):
            assert "<!channel>" not in fallback
            assert "<https://evil" not in fallback
    assert seen >= 5  # card, approver Home, deny modal, audit entries, DMs


def _home_of(call: RecordedCall, user: str, grant_id: str) -> bool:
    """A views.publish of ``user``'s Home that shows ``grant_id``."""
    return call.params.get("user_id") == user and grant_id in json.dumps(call.params)


def _text_objects(node: object) -> list[dict]:
    found: list[dict] = []
    if isinstance(node, dict):
        if node.get("type") in ("plain_text", "mrkdwn") and isinstance(node.get("text"), str):
            found.append(node)
        for value in node.values():
            found += _text_objects(value)
    elif isinstance(node, list):
        for value in node:
            found += _text_objects(value)
    return found


async def test_rate_limited_post_is_retried_and_delivered_once(bed: SlackBed) -> None:
    bed.emu.rate_limit("chat.postMessage", retry_after=1)
    grant_id = await request_edit(bed)
    # The limited post may be the card or an audit entry: wait for its retry either way.
    (limited,) = await bed.emu.wait_for("chat.postMessage", predicate=lambda c: c.status == 429)
    await bed.emu.wait_for(
        "chat.postMessage", predicate=lambda c: c.ok and c.params == limited.params
    )
    posts = bed.emu.calls_to("chat.postMessage")
    limited = [c for c in posts if c.status == 429]
    assert len(limited) == 1
    retried = [c for c in posts if c.params == limited[0].params and c is not limited[0]]
    assert len(retried) == 1
    assert retried[0].ok
    assert retried[0].at - limited[0].at >= 1.0  # Retry-After was honoured
    channel = retried[0].response["channel"]
    text = limited[0].params["text"]
    assert [m["text"] for m in bed.emu.messages(channel)].count(text) == 1
    await _wait_for(bed, grant_id, lambda g: g.card is not None)


async def test_rate_limited_card_is_posted_once(bed: SlackBed) -> None:
    # Limit every post until the card goes out: the card itself is retried too.
    bed.emu.rate_limit("chat.postMessage", retry_after=1, times=3)
    grant_id = await request_edit(bed)
    card_posts = [
        c for c in bed.emu.calls_to("chat.postMessage") if c.params["channel"] == APPROVALS
    ]
    assert [c.status for c in card_posts][-1] == 200
    assert bed.card_for(grant_id)  # exactly one card for the request


async def test_reminder_and_expiry(bed: SlackBed, cluster: TestCluster) -> None:
    reply = await bed.command("request view -c a -n team-b -d 20s reading logs", "U0ALICE")
    assert reply.status == 200
    grant = await bed.only_grant("U0ALICE")
    await bed.wait_grant(grant.id, State.ACTIVE)
    reminder = await bed.wait_dm("U0ALICE", "expires <!date^")
    assert "access_extend" in json.dumps(reminder)
    await bed.wait_grant(grant.id, State.EXPIRED)
    await bed.wait_dm("U0ALICE", "has expired")


async def test_revoke_button_and_command(bed: SlackBed) -> None:
    await bed.command("request view -c a -n team-a -d 1h reading", "U0ALICE")
    grant = await bed.only_grant("U0ALICE")
    await bed.wait_grant(grant.id, State.ACTIVE)
    active_dm = await bed.wait_dm("U0ALICE", "export KUBECONFIG")

    # Someone else's click is refused and audited; the owner's works.
    await bed.click("access_revoke", grant.id, "U0BOB", active_dm, bed.emu.dm_channel("U0ALICE"))
    await bed.wait_response("Only the grant's owner")
    assert (await bed.core.store.get(grant.id)).state == State.ACTIVE  # type: ignore[union-attr]
    await bed.click("access_revoke", grant.id, "U0ALICE", active_dm, bed.emu.dm_channel("U0ALICE"))
    await bed.wait_grant(grant.id, State.REVOKED)
    await bed.wait_response("is revoked")
    await bed.wait_dm("U0ALICE", "was revoked by <@U0ALICE>")

    await bed.command("revoke " + grant.id, "U0ALICE")
    await bed.wait_response("already ended")
    await bed.command("revoke nosuchgrant", "U0ALICE")
    await bed.wait_response("No request or grant")


async def test_extend_via_modal_and_command(bed: SlackBed) -> None:
    await bed.command("request view -c a -n team-a -d 1h reading", "U0ALICE")
    grant = await bed.only_grant("U0ALICE")
    active = await bed.wait_grant(grant.id, State.ACTIVE)
    active_dm = await bed.wait_dm("U0ALICE", "export KUBECONFIG")

    await bed.click("access_extend", grant.id, "U0ALICE", active_dm, bed.emu.dm_channel("U0ALICE"))
    (opened,) = await bed.emu.wait_for("views.open")
    modal = opened.params["view"]
    assert modal["callback_id"] == "access_extend_modal"
    over = {"duration": {"value": text_input("8h")}}
    answer = (
        await bed.submit("access_extend_modal", over, "U0ALICE", modal["private_metadata"])
    ).json()
    assert answer["response_action"] == "errors"
    assert "maximum" in answer["errors"]["duration"]

    ok = {"duration": {"value": text_input("30m")}}
    reply = await bed.submit("access_extend_modal", ok, "U0ALICE", modal["private_metadata"])
    assert reply.text == ""
    extended = await _wait_for(bed, grant.id, lambda g: g.expires_at != active.expires_at)
    assert extended.expires_at is not None
    assert active.expires_at is not None
    assert (extended.expires_at - active.expires_at).total_seconds() == 1800
    await bed.wait_dm("U0ALICE", "was extended")
    await bed.emu.wait_for(UPLOAD_URL, 2)  # a fresh kubeconfig after the extension

    await bed.command(f"extend {grant.id} -d 15m", "U0ALICE")
    await bed.wait_response("is extended")
    await bed.command(f"extend {grant.id} -d 9h", "U0ALICE")
    await bed.wait_response("maximum")


async def _wait_for(bed: SlackBed, grant_id: str, ok: object, timeout: float = PATIENCE):  # type: ignore[no-untyped-def]
    from tests.support.harness import wait_for_grant

    return await wait_for_grant(bed.core, grant_id, ok, timeout)  # type: ignore[arg-type]


async def test_extension_of_an_approved_role_goes_to_approvers(bed: SlackBed) -> None:
    grant_id = await request_edit(bed)
    await bed.click("access_approve", grant_id, "U0LEAD", bed.card_for(grant_id), APPROVALS)
    await bed.wait_grant(grant_id, State.ACTIVE)
    await bed.command(f"extend {grant_id} -d 1h", "U0ALICE")
    await bed.wait_response("went to the approvers")
    extension = [g for g in await bed.core.store.by_user("U0ALICE") if g.kind == "extend"]
    assert len(extension) == 1
    card = await bed.wait_card(extension[0].id)
    assert "Extension request" in blocks_text(card)
    await bed.click("access_approve", extension[0].id, "U0PL2", card, APPROVALS)
    await bed.wait_dm("U0ALICE", "was extended")


async def test_list_help_and_mistakes(bed: SlackBed) -> None:
    help_reply = (await bed.command("help", "U0ALICE")).json()
    assert help_reply["response_type"] == "ephemeral"
    assert "/access request ROLE" in json.dumps(help_reply)

    mistake = (await bed.command("request edit -n team-a -d 2x fix", "U0ALICE")).json()
    text = json.dumps(mistake)
    assert "invalid duration" in text
    assert "/access request ROLE" in text

    rejected = (await bed.command("request edit -c a -n prod fix", "U0ALICE")).json()
    assert "not allowed for role edit" in json.dumps(rejected)
    assert "/access request ROLE" in json.dumps(rejected)

    for namespace, why in [
        ("kube-system", "it belongs to the Kubernetes control plane"),
        ("accessbot-users", "it holds the ServiceAccounts of every AccessBot grant"),
    ]:
        protected = (await bed.command(f"request edit -c a -n {namespace} fix", "U0ALICE")).json()
        assert f"namespace {namespace} is protected: {why}" in json.dumps(protected)
    assert await bed.core.store.by_user("U0ALICE") == []

    several = (await bed.command("request view -n team-a fix", "U0ALICE")).json()
    assert "pick one of: a, b" in json.dumps(several)

    await bed.command("list", "U0ALICE")
    await bed.wait_response("no grants")
    await bed.command("list --all", "U0ALICE")
    await bed.wait_response("Only AccessBot admins")
    grant_id = await request_edit(bed, user="U0BOB")
    await bed.command("list --all", "U0ADMIN")
    listing = await bed.wait_response("All live grants")
    assert grant_id in json.dumps(listing.params)
    assert "U0BOB" in json.dumps(listing.params)


async def test_user_change_offboards_once(bed: SlackBed) -> None:
    await bed.command("request view -c a -n team-a -d 1h reading", "U0ALICE")
    grant = await bed.only_grant("U0ALICE")
    await bed.wait_grant(grant.id, State.ACTIVE)
    pending_id = await request_edit(bed)

    event = bed.emu.deactivate_user("U0ALICE")
    first = await bed.event(event, event_id="Ev0OFFBOARD")
    again = await bed.event(event, event_id="Ev0OFFBOARD", retry=1)
    assert (first.status, again.status) == (200, 200)
    await bed.wait_grant(grant.id, State.REVOKED)
    await bed.wait_grant(pending_id, State.CANCELLED)
    offboarding = await bed.core.store.offboarding("U0ALICE")
    assert offboarding is not None
    assert offboarding.by == "slack"
    audit = await bed.core.store.audit_tail(100)
    revoked = [e for e in audit if e["grant_id"] == grant.id and e["event"] == "revoked"]
    assert len(revoked) == 1

    # A change that is not a deactivation does nothing.
    bed.emu.add_user("U0BOB", name="bob.smith", email="bob@example.com")
    await bed.event({"type": "user_change", "user": {"id": "U0BOB", "deleted": False}})
    assert await bed.core.store.offboarding("U0BOB") is None


async def test_app_home(bed: SlackBed) -> None:
    mine = await request_edit(bed)
    await bed.command("request view -c a -n team-a -d 1h reading", "U0ALICE")
    await bed.event({"type": "app_home_opened", "user": "U0ALICE", "channel": "D0", "tab": "home"})
    (published,) = await bed.emu.wait_for("views.publish")
    home = json.dumps(published.params["view"])
    assert "access_open_modal" in home
    assert mine in home

    await bed.event({"type": "app_home_opened", "user": "U0PL1", "channel": "D1", "tab": "home"})
    calls = await bed.emu.wait_for("views.publish", 2)
    approver_home = calls[-1].params["view"]
    assert "Waiting for your decision" in json.dumps(approver_home)
    assert mine in json.dumps(approver_home)

    # Approving from Home answers by DM (no response_url there) and refreshes it.
    payload_message = {"ts": "0", "blocks": approver_home["blocks"]}
    from tests.support.slack_signing import _payload_form, block_actions_payload

    payload = block_actions_payload(
        "access_approve", mine, "U0PL1", "D1", "0", message=payload_message
    )
    payload.pop("response_url")
    payload["container"] = {"type": "view", "view_id": "V0HOME"}
    payload["view"] = {"id": "V0HOME", "type": "home"}
    await bed.post(_payload_form(payload))
    await bed.wait_grant(mine, State.APPROVED, State.PROVISIONING, State.ACTIVE)
    await bed.emu.wait_for("views.publish", 3)


async def test_card_channel_not_found_tells_admins(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    policy = POLICY.replace("approvals_channel: C0APPROVALS", 'approvals_channel: "#nowhere"')
    async with slack_bed(
        redis_url, {"a": cluster, "b": cluster_b}, tmp_path, policy_text=policy
    ) as bed:
        reply = await bed.command("request edit -c a -n team-a fix things", "U0ALICE")
        assert reply.status == 200
        grant = await bed.only_grant("U0ALICE")
        alert = await bed.wait_dm("U0ADMIN", "channel_not_found")
        assert "#nowhere" in blocks_text(alert)
        await bed.wait_response("waiting for approval")
        stored = await bed.core.store.get(grant.id)
        assert stored is not None
        assert stored.state == State.PENDING
        assert stored.card is None
        # The request is not lost: approvers still see it in App Home.
        assert [g.id for g in await bed.core.workflow.awaiting("U0LEAD")] == [grant.id]
        # Another failure of the same kind does not spam the admins. The alert would be
        # sent while the card is being posted, so before Bob is told where his request went.
        await bed.command("request edit -c a -n team-b more fixing", "U0BOB")
        await bed.only_grant("U0BOB")
        await bed.wait_response("waiting for approval")
        alerts = [m for m in bed.dm("U0ADMIN") if "channel_not_found" in json.dumps(m)]
        assert len(alerts) == 1


async def test_missing_scope_on_delivery_fails_the_grant_cleanly(bed: SlackBed) -> None:
    bed.emu.fail("files.getUploadURLExternal", "missing_scope", needed="files:write")
    await bed.command("request view -c a -n team-a -d 1h reading", "U0ALICE")
    grant = await bed.only_grant("U0ALICE")
    failed = await bed.wait_grant(grant.id, State.FAILED)
    assert "missing_scope" in (failed.failure or "")
    alert = await bed.wait_dm("U0ADMIN", "missing_scope")
    assert "files:write" in blocks_text(alert)
    await bed.wait_dm("U0ALICE", "failed")
    assert bed.emu.uploaded_files == []


async def test_responses_are_ephemeral(bed: SlackBed) -> None:
    await bed.command("list", "U0ALICE")
    (call,) = await bed.emu.wait_for(RESPONSE_URL)
    assert call.params["response_type"] == "ephemeral"


async def test_redelivered_events_are_handled_once(bed: SlackBed) -> None:
    event = {"type": "app_home_opened", "user": "U0ALICE", "channel": "D0", "tab": "home"}
    await bed.event(event, event_id="Ev0HOME")
    await bed.event(event, event_id="Ev0HOME", retry=1)
    await bed.event(event, event_id="Ev0HOME", retry=2)
    await bed.emu.wait_for("views.publish")
    # The redeliveries were answered without being handled: a new event, sent after
    # them, is the second and last publish.
    await bed.event(event, event_id="Ev0OTHER")
    await bed.emu.wait_for("views.publish", 2)
    assert len(bed.emu.calls_to("views.publish")) == 2


async def test_socket_mode(bed: SlackBed) -> None:
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    from bot.slack import build_slack_app, make_slack_client
    from tests.slack.support import BOT_TOKEN
    from tests.support.slack_signing import slash_command_payload

    client = make_slack_client(BOT_TOKEN, bed.emu.base_url)
    app = build_slack_app(core=bed.core, client=client, signing_secret=None, socket_mode=True)
    handler = AsyncSocketModeHandler(app, "xapp-1-accessbot-test", web_client=client)
    await handler.connect_async()
    try:
        envelope = await bed.emu.socket_send(
            "slash_commands", slash_command_payload("/access", "help", "U0ALICE")
        )
        ack = await bed.emu.wait_socket_ack(envelope)
        assert ack is not None
        assert "/access request ROLE" in json.dumps(ack)
        response_url = bed.emu.new_response_url()
        payload = slash_command_payload(
            "/access", "request edit -n team-a socket works", "U0ALICE", response_url=response_url
        )
        await bed.emu.wait_socket_ack(await bed.emu.socket_send("slash_commands", payload))
        await bed.wait_response("waiting for approval")
    finally:
        await handler.close_async()


async def test_slack_escaping_of_command_text_is_undone(bed: SlackBed) -> None:
    # Slack sends typed &, < and > as entities; the stored reason is what was typed.
    await bed.command("request edit -n team-a -d 1h a &lt;b&gt; &amp;amp; c", "U0ALICE")
    grant = await bed.only_grant("U0ALICE")
    assert grant.reason == "a <b> &amp; c"
    card = await bed.wait_card(grant.id)
    assert "a &lt;b&gt; &amp;amp; c" in blocks_text(card)
