"""What reaches /slack/events: forged or malformed requests, hostile input, replays.

Everything goes through the real HTTP handler ``accessbot serve`` uses, signed as
Slack signs (or deliberately not), against the Slack emulator, Redis and apiservers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from bot.lifecycle import State
from tests.slack.support import APPROVALS, SECRET, SlackBed
from tests.support.slack_signing import (
    block_actions_body,
    signature,
    slash_command_body,
    view_submission_body,
)


async def _raw_post(bed: SlackBed, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with bed.http.post(bed.url, data=body, headers=headers) as resp:
        return resp.status, await resp.text()


def _list_command(bed: SlackBed) -> bytes:
    return slash_command_body("/access", "list", "U0ALICE", response_url=bed.emu.new_response_url())


# -- signatures -------------------------------------------------------------------------

NOW = int(time.time())
BAD_TIMESTAMPS: list[str | None] = [
    None,
    "",
    "abc",
    "12abc",
    "-1",
    str(-NOW),
    "1.5",
    f"{NOW}.0",
    "9" * 40,
    "9" * 5000,
    "1e10",
    " " + str(NOW),
    "+" + str(NOW),
    f"{NOW:_}",
    "\u0661\u0662\u0663",  # Arabic-Indic digits: int() accepts them
    "\uff11" * 10,  # full-width digits
    "nan",
    "0",
    str(NOW - 3600),  # stale: outside Slack's 5-minute window
    str(NOW + 3600),
]


@pytest.mark.parametrize("timestamp", BAD_TIMESTAMPS)
async def test_bad_timestamps_are_401(bed: SlackBed, timestamp: str | None) -> None:
    body = _list_command(bed)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if timestamp is not None:
        headers["X-Slack-Request-Timestamp"] = timestamp
        # Signed over exactly that header text: only the timestamp is wrong.
        base = b"v0:" + timestamp.encode() + b":" + body
        mac = hmac.new(SECRET.encode(), base, hashlib.sha256).hexdigest()
        headers["X-Slack-Signature"] = "v0=" + mac
    status, _ = await _raw_post(bed, body, headers)
    assert status == 401, timestamp


BAD_SIGNATURES: list[str | None] = [
    None,
    "",
    "v0=",
    "v0=zz",
    "v1=" + "0" * 64,
    "v0=" + "0" * 64,
    "v0=" + "é" * 64,
    "v0=" + "\u0661" * 64,
    "v0=" + "a" * 4000,
    "garbage",
]


@pytest.mark.parametrize("sig", BAD_SIGNATURES)
async def test_bad_signatures_are_401(bed: SlackBed, sig: str | None) -> None:
    body = _list_command(bed)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(int(time.time())),
    }
    if sig is not None:
        headers["X-Slack-Signature"] = sig
    status, _ = await _raw_post(bed, body, headers)
    assert status == 401


async def test_uppercase_hex_of_the_right_signature_and_a_good_one(bed: SlackBed) -> None:
    body = _list_command(bed)
    ts = int(time.time())
    good = signature(SECRET, body, ts)
    headers = {
        "X-Slack-Request-Timestamp": str(ts),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    status, _ = await _raw_post(
        bed, body, {**headers, "X-Slack-Signature": "V0=" + good[3:].upper()}
    )
    assert status == 401
    status, _ = await _raw_post(bed, body, {**headers, "X-Slack-Signature": good})
    assert status == 200


@pytest.mark.parametrize(
    "body",
    [
        b"payload=not-json",
        b"payload=%7B",
        b"{not json",
        b"[1,2,3]",
        b'{"type": "event_callback", "event": "x"}',
        b"\xff\xfe\xfa",
        b"payload=%5B%5D",
        b"",
        b"command=%2Faccess&text=list",  # no user at all
        b"[" * 50_000,  # json.loads raises RecursionError, not ValueError
        b"payload=" + b"%5B" * 20_000,
        b'{"type": "event_callback", "event_id": "Ev1", "event": {"type": "user_change", '
        b'"user": "U0ALICE"}}',
        b'{"n": ' + b"9" * 5000 + b"}",  # int() digit limit inside the JSON parser
    ],
)
async def test_signed_garbage_is_a_4xx_never_a_5xx(bed: SlackBed, body: bytes) -> None:
    ts = int(time.time())
    headers = {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": signature(SECRET, body, ts),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    status, _ = await _raw_post(bed, body, headers)
    assert status < 500, body


# -- hostile input in commands ----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "request view -n team-a -d {d} looking at logs",
        "request view -n team-a -d {d}h looking at logs",
        "request view -n team-a --duration={d}m looking",
        "extend abc123 -d {d}",
    ],
)
async def test_huge_duration_is_the_normal_invalid_duration_reply(bed: SlackBed, text: str) -> None:
    reply = await bed.command(text.format(d="9" * 4301), "U0ALICE")
    assert reply.status == 200
    answer = reply.json()
    assert answer["response_type"] == "ephemeral"
    assert "invalid duration" in json.dumps(answer)
    assert len(reply.text) < 3000
    assert await bed.core.store.by_user("U0ALICE") == []


async def test_huge_duration_in_the_request_form_is_a_field_error(bed: SlackBed) -> None:
    from tests.slack.support import values_for_request

    values = values_for_request(
        cluster="a", role="view", namespace="team-a", duration="9" * 4301, reason="logs"
    )
    reply = await bed.submit("access_request_modal", values, "U0ALICE")
    assert reply.status == 200
    answer = reply.json()
    assert answer["response_action"] == "errors"
    assert "duration" in answer["errors"]


@pytest.mark.parametrize(
    "at",
    [
        "0001-01-01T00:00+23:59",  # a real local time whose UTC instant is before year 1
        "9999-12-31T23:59-23:59",  # ...or after year 9999
        "2026-02-30T09:00Z",
        "2026-12-01T09:00+99:00",
        "9" * 4301,
    ],
)
async def test_start_time_out_of_range_is_the_normal_start_reply(bed: SlackBed, at: str) -> None:
    reply = await bed.command(f"request view -n team-a --at {at} looking at logs", "U0ALICE")
    assert reply.status == 200
    answer = json.dumps(reply.json())
    assert "is not a real date and time" in answer or "cannot read the start time" in answer
    assert await bed.core.store.by_user("U0ALICE") == []


@pytest.mark.parametrize("namespace", ["a%2Fb", "../x", "a/b", "kube-system%2Fsecrets", "%2e%2e"])
async def test_helm_namespace_is_checked_before_any_url(bed: SlackBed, namespace: str) -> None:
    reply = await bed.command(f"helm -n {namespace}", "U0ALICE", command="/k8s")
    assert reply.status == 200
    answer = json.dumps(reply.json())
    assert "invalid namespace" in answer
    assert "lowercase letters, digits and '-'" in answer


async def test_revoke_with_a_hostile_grant_id_is_a_clear_reply(bed: SlackBed) -> None:
    reply = await bed.command("revoke ab:*", "U0ALICE")
    assert reply.status == 200
    assert "invalid grant id" in json.dumps(reply.json())


# -- replays ----------------------------------------------------------------------------


async def test_replayed_slash_command_creates_one_grant(bed: SlackBed) -> None:
    body = slash_command_body(
        "/access",
        "request view -c a -n team-a -d 1h reading logs",
        "U0ALICE",
        response_url=bed.emu.new_response_url(),
    )
    first = await bed.post(body)
    # The same signed bytes again, as an attacker who captured them would send them
    # (fresh signature headers too: within the window both are valid).
    replays = [await bed.post(body) for _ in range(3)]
    assert first.status == 200
    assert all(r.status == 200 for r in replays)
    grant = await bed.only_grant("U0ALICE")
    await bed.wait_grant(grant.id, State.ACTIVE)
    # Every replay handled to its end and no job left to run: a second grant would
    # exist (and be provisioned) by now.
    await bed.settled()
    grants = await bed.core.store.by_user("U0ALICE")
    assert [g.id for g in grants] == [grant.id]
    uploads = [f for f in bed.emu.uploaded_files if f.filename == "a-view.kubeconfig"]
    assert len(uploads) == 1


async def test_replayed_request_form_creates_one_request(bed: SlackBed) -> None:
    from tests.slack.support import values_for_request

    values = values_for_request(
        cluster="a", role="edit", namespace="team-a", duration="1h", reason="deploy"
    )
    body = view_submission_body("access_request_modal", values, "U0ALICE")
    await bed.post(body)
    await bed.post(body)
    grant = await bed.only_grant("U0ALICE")
    await bed.emu.wait_for(
        "chat.postMessage", timeout=30, predicate=lambda c: c.params.get("channel") == APPROVALS
    )
    await bed.settled()  # the replay handled to its end: a second request would exist now
    assert [g.id for g in await bed.core.store.by_user("U0ALICE")] == [grant.id]


async def test_replayed_click_is_handled_once(bed: SlackBed) -> None:
    """A click is de-duplicated on its trigger_id too: a refused one is audited once."""
    from tests.slack.test_flows import request_edit

    grant_id = await request_edit(bed)
    card = bed.card_for(grant_id)
    body = block_actions_body(
        "access_approve", grant_id, "U0BOB", APPROVALS, str(card["ts"]),
        message=dict(card), response_url=bed.emu.new_response_url(),
    )  # fmt: skip
    assert (await bed.post(body)).status == 200
    await bed.wait_response("not an approver")
    for _ in range(2):  # the same signed bytes again
        assert (await bed.post(body)).status == 200
    await bed.settled()
    refused = [
        e
        for e in await bed.core.store.audit_tail(500)
        if e["event"] == "refused" and e["actor"] == "U0BOB"
    ]
    assert len(refused) == 1


async def test_distinct_commands_are_not_mistaken_for_replays(bed: SlackBed) -> None:
    for _ in range(2):
        reply = await bed.command("list", "U0ALICE")
        assert reply.status == 200
    await bed.emu.wait_for("response_url", 2, timeout=30)


async def test_ssl_check_is_answered_but_cannot_carry_a_command(bed: SlackBed) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _ = await _raw_post(bed, b"ssl_check=1&token=legacy", form)
    assert status == 200
    smuggled = b"ssl_check=1&command=%2Faccess&text=list&user_id=U0ALICE"
    status, _ = await _raw_post(bed, smuggled, form)
    assert status == 401
