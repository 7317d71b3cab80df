"""The Slack emulator, driven by the real slack_sdk clients, and the signing helper."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncSay
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.patience import PATIENCE
from tests.support.slack_emulator import (
    RESPONSE_URL,
    UPLOAD_URL,
    SlackEmulator,
    SlackEmulatorTimeout,
)
from tests.support.slack_signing import (
    BOT_USER_ID,
    TEAM_ID,
    block_actions_body,
    event_callback_body,
    event_callback_payload,
    sign,
    slash_command_body,
    slash_command_payload,
    static_select,
    text_input,
    url_verification_body,
    view_submission_body,
)

BOT_TOKEN = "xoxb-1-emulator-test"
APP_TOKEN = "xapp-1-emulator-test"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
KUBECONFIG = b"apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user: {token: s3cr3t}\n"


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator() as emulator:
        yield emulator


@pytest.fixture
def client(emu: SlackEmulator) -> AsyncWebClient:
    return AsyncWebClient(token=BOT_TOKEN, base_url=emu.base_url)


async def raw_post(url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(url, **kwargs) as resp:
        return resp.status, await resp.json()


async def eventually(condition: Callable[[], bool], timeout: float = PATIENCE) -> None:
    """Bounded polling for state the emulator has no waiter for."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- Web API basics


async def test_auth_test_identifies_the_bot(emu: SlackEmulator, client: AsyncWebClient) -> None:
    resp = await client.auth_test()

    assert resp["user_id"] == BOT_USER_ID
    assert resp["team_id"] == TEAM_ID
    assert resp["bot_id"].startswith("B")
    (call,) = emu.calls_to("auth.test")
    assert call.token == BOT_TOKEN
    assert call.headers["Authorization"] == f"Bearer {BOT_TOKEN}"


async def test_base_url_points_at_the_local_api(emu: SlackEmulator) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/", emu.base_url)


@pytest.mark.parametrize(
    ("token", "error"),
    [
        ("xoxp-user-token", "invalid_auth"),
        (APP_TOKEN, "not_allowed_token_type"),
    ],
)
async def test_bad_tokens_are_rejected(emu: SlackEmulator, token: str, error: str) -> None:
    with pytest.raises(SlackApiError) as raised:
        await AsyncWebClient(token=token, base_url=emu.base_url).auth_test()

    assert raised.value.response["error"] == error


async def test_missing_token_is_not_authed(emu: SlackEmulator) -> None:
    status, body = await raw_post(emu.base_url + "auth.test")

    assert (status, body) == (200, {"ok": False, "error": "not_authed"})


async def test_configured_tokens_replace_the_prefix_rule() -> None:
    async with SlackEmulator(bot_tokens=["xoxb-only-this"]) as emu:
        ok = await AsyncWebClient(token="xoxb-only-this", base_url=emu.base_url).auth_test()
        with pytest.raises(SlackApiError, match="invalid_auth"):
            await AsyncWebClient(token="xoxb-other", base_url=emu.base_url).auth_test()

    assert ok["ok"] is True


async def test_unknown_method(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as raised:
        await client.api_call("chat.teleport", json={"channel": "C1"})

    assert raised.value.response["error"] == "unknown_method"


async def test_form_encoded_call_with_token_param(emu: SlackEmulator) -> None:
    form = {"token": BOT_TOKEN, "channel": "C0FORM", "blocks": json.dumps([_section("hi")])}

    status, body = await raw_post(emu.base_url + "chat.postMessage", data=form)

    assert status == 200
    assert body["ok"] is True
    (call,) = emu.calls_to("chat.postMessage")
    assert call.token == BOT_TOKEN
    assert "token" not in call.params
    assert call.params["blocks"] == [_section("hi")]
    assert emu.messages("C0FORM")[0]["blocks"] == [_section("hi")]


# --------------------------------------------------------------------------- messages


async def test_post_then_update_rewrites_the_stored_message(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    card = [_section("Request *edit* on prod"), _buttons("req-1")]
    posted = await client.chat_postMessage(channel="C0APPROVALS", text="request", blocks=card)

    assert posted["channel"] == "C0APPROVALS"
    assert posted["message"]["ts"] == posted["ts"]
    assert posted["message"]["blocks"] == card

    updated = await client.chat_update(
        channel="C0APPROVALS", ts=posted["ts"], text="approved", blocks=[_section("Approved")]
    )

    assert updated["ts"] == posted["ts"]
    (stored,) = emu.messages("C0APPROVALS")
    assert stored["ts"] == posted["ts"]
    assert stored["text"] == "approved"
    assert stored["blocks"] == [_section("Approved")]
    assert stored["edited"]["user"] == BOT_USER_ID


async def test_update_of_an_unknown_message_fails(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError, match="message_not_found"):
        await client.chat_update(channel="C0APPROVALS", ts="1700000000.000100", text="x")


async def test_timestamps_are_unique_increasing_strings(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    stamps = [(await client.chat_postMessage(channel="C1", text=str(i)))["ts"] for i in range(20)]

    assert all(re.fullmatch(r"\d{10}\.\d{6}", ts) for ts in stamps)
    assert len(set(stamps)) == 20
    assert [float(ts) for ts in stamps] == sorted(float(ts) for ts in stamps)
    assert [m["text"] for m in emu.messages("C1")] == [str(i) for i in range(20)]


async def test_posting_to_a_user_id_lands_in_their_dm(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    resp = await client.chat_postMessage(channel="U0ALICE", text="hello")

    assert resp["channel"] == emu.dm_channel("U0ALICE")
    assert emu.messages(resp["channel"])[0]["text"] == "hello"


async def test_ephemeral_message(emu: SlackEmulator, client: AsyncWebClient) -> None:
    resp = await client.chat_postEphemeral(channel="C0GENERAL", user="U0ALICE", text="only you")

    (message,) = emu.ephemeral_messages("C0GENERAL", user="U0ALICE")
    assert message["ts"] == resp["message_ts"]
    assert message["text"] == "only you"


async def test_slack_block_limits_are_enforced(client: AsyncWebClient) -> None:
    too_many = [_section(str(i)) for i in range(51)]
    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel="C1", text="x", blocks=too_many)
    assert raised.value.response["error"] == "invalid_blocks"

    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel="C1", text="x", blocks=[_section("y" * 3001)])
    assert any("/blocks/0/text/text" in e for e in raised.value.response["errors"])


async def test_channel_names_resolve_through_the_registry(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    emu.add_channel("C0APPROVALS", "access-approvals")

    resp = await client.chat_postMessage(channel="#access-approvals", text="hi")
    with pytest.raises(SlackApiError, match="channel_not_found"):
        await client.chat_postMessage(channel="#nowhere", text="hi")

    assert resp["channel"] == "C0APPROVALS"


# --------------------------------------------------------------------------- files


async def test_files_upload_v2_into_a_dm(emu: SlackEmulator, client: AsyncWebClient) -> None:
    emu.add_user("U0ALICE", email="alice@example.com")
    dm = (await client.conversations_open(users="U0ALICE"))["channel"]["id"]

    resp = await client.files_upload_v2(
        channel=dm,
        content=KUBECONFIG,
        filename="prod-view.kubeconfig",
        title="prod view access",
        initial_comment="Your access is ready",
    )

    assert dm.startswith("D")
    (uploaded,) = emu.uploaded_files
    assert uploaded.content == KUBECONFIG
    assert uploaded.filename == "prod-view.kubeconfig"
    assert uploaded.channel_id == dm
    assert uploaded.title == "prod view access"
    assert uploaded.initial_comment == "Your access is ready"
    assert resp["file"]["id"] == uploaded.file_id
    assert emu.calls_to(UPLOAD_URL)[0].params["length"] == len(KUBECONFIG)
    (share,) = emu.messages(dm)
    assert share["text"] == "Your access is ready"
    assert share["files"][0]["name"] == "prod-view.kubeconfig"


async def test_upload_with_file_bytes(emu: SlackEmulator, client: AsyncWebClient) -> None:
    await client.files_upload_v2(channel="D0BOB", file=b"\x00\xffbinary", filename="b.bin")

    assert [(f.content, f.filename) for f in emu.uploaded_files] == [(b"\x00\xffbinary", "b.bin")]


async def test_multipart_upload_is_accepted(emu: SlackEmulator, client: AsyncWebClient) -> None:
    reserved = await client.files_getUploadURLExternal(filename="x.txt", length=5)
    form = aiohttp.FormData()
    form.add_field("file", b"hello", filename="x.txt")

    async with aiohttp.ClientSession() as http, http.post(reserved["upload_url"], data=form) as r:
        assert r.status == 200
    await client.files_completeUploadExternal(files=[{"id": reserved["file_id"]}], channel_id="C1")

    assert emu.uploaded_files[0].content == b"hello"


async def test_upload_to_a_user_id_instead_of_a_dm_fails(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    with pytest.raises(SlackApiError, match="channel_not_found"):
        await client.files_upload_v2(channel="U0ALICE", content=b"x", filename="a.kubeconfig")

    assert emu.uploaded_files == []


async def test_failed_upload_is_reported_to_the_sdk(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    emu.server_error(UPLOAD_URL, status=500)

    with pytest.raises(SlackRequestError, match="status: 500"):
        await client.files_upload_v2(channel="D0BOB", content=b"x", filename="a.kubeconfig")

    assert emu.uploaded_files == []
    assert emu.calls_to("files.completeUploadExternal") == []


async def test_conversations_open_is_stable_per_user(client: AsyncWebClient) -> None:
    first = await client.conversations_open(users="U0ALICE")
    again = await client.conversations_open(users="U0ALICE")
    other = await client.conversations_open(users="U0BOB")

    assert first["channel"]["id"] == again["channel"]["id"] != other["channel"]["id"]
    assert again["already_open"] is True


async def test_cannot_dm_a_deactivated_user(emu: SlackEmulator, client: AsyncWebClient) -> None:
    emu.add_user("U0GONE", deleted=True)

    with pytest.raises(SlackApiError, match="user_disabled"):
        await client.conversations_open(users="U0GONE")


# --------------------------------------------------------------------------- failure injection


async def test_fail_makes_the_client_raise_then_counts_down(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    emu.fail("chat.postMessage", error="channel_not_found", times=2)

    for _ in range(2):
        with pytest.raises(SlackApiError) as raised:
            await client.chat_postMessage(channel="C1", text="x")
        assert raised.value.response["error"] == "channel_not_found"
    ok = await client.chat_postMessage(channel="C1", text="x")

    assert ok["ok"] is True
    assert [c.error for c in emu.calls_to("chat.postMessage")] == [
        "channel_not_found",
        "channel_not_found",
        None,
    ]
    assert len(emu.messages("C1")) == 1


async def test_rate_limit_is_retried_by_the_sdk_handler(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    emu.rate_limit("chat.postMessage", retry_after=0)

    resp = await client.chat_postMessage(channel="C1", text="eventually")

    assert resp["ok"] is True
    first, second = emu.calls_to("chat.postMessage")
    assert (first.status, first.error, second.status) == (429, "ratelimited", 200)


async def test_rate_limit_without_retry_handler(emu: SlackEmulator, client: AsyncWebClient) -> None:
    emu.rate_limit("users.info", retry_after=7)

    with pytest.raises(SlackApiError) as raised:
        await client.users_info(user="U0ALICE")

    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"
    assert raised.value.response["error"] == "ratelimited"


async def test_server_error(emu: SlackEmulator, client: AsyncWebClient) -> None:
    emu.server_error("auth.test", status=503)

    with pytest.raises(SlackApiError) as raised:
        await client.auth_test()

    assert raised.value.response.status_code == 503
    assert (await client.auth_test())["ok"] is True


async def test_delay_holds_the_answer(emu: SlackEmulator, client: AsyncWebClient) -> None:
    emu.delay("auth.test", 0.3)
    started = time.monotonic()

    await client.auth_test()

    assert time.monotonic() - started >= 0.3


async def test_reset_forgets_records_and_failures(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    emu.add_user("U0ALICE")
    await client.chat_postMessage(channel="C1", text="x")
    emu.fail("auth.test")

    emu.reset()

    assert emu.calls == []
    assert emu.messages("C1") == []
    assert (await client.auth_test())["ok"] is True
    assert (await client.users_info(user="U0ALICE"))["user"]["id"] == "U0ALICE"


# --------------------------------------------------------------------------- waiting


async def test_wait_for_sees_calls_made_in_the_background(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    async def deliver() -> None:
        await client.auth_test()
        await client.chat_postMessage(channel="C1", text="first")
        await client.chat_postMessage(channel="C2", text="second")

    task = asyncio.create_task(deliver())
    calls = await emu.wait_for("chat.postMessage", predicate=lambda c: c.params["channel"] == "C2")
    await task

    assert [c.params["text"] for c in calls] == ["second"]
    assert emu.messages("C2")[0]["text"] == "second"


async def test_wait_for_times_out_with_a_helpful_message(emu: SlackEmulator) -> None:
    with pytest.raises(SlackEmulatorTimeout, match=r"chat\.update"):
        await emu.wait_for("chat.update", timeout=0.05)


# --------------------------------------------------------------------------- users and groups


async def test_users_info_has_slacks_user_shape(emu: SlackEmulator, client: AsyncWebClient) -> None:
    emu.add_user("U0ALICE", name="alice", real_name="Alice Liddell", email="alice@example.com")

    user = (await client.users_info(user="U0ALICE"))["user"]

    assert user["id"] == "U0ALICE"
    assert user["deleted"] is False
    assert user["tz"] == "Europe/Berlin"
    assert user["tz_offset"] in (3600, 7200)
    assert user["profile"]["email"] == "alice@example.com"
    assert user["profile"]["real_name"] == "Alice Liddell"
    with pytest.raises(SlackApiError, match="user_not_found"):
        await client.users_info(user="U0NOBODY")


async def test_lookup_by_email(emu: SlackEmulator, client: AsyncWebClient) -> None:
    emu.add_user("U0ALICE", email="alice@example.com")

    found = await client.users_lookupByEmail(email="Alice@Example.com")
    with pytest.raises(SlackApiError) as raised:
        await client.users_lookupByEmail(email="mallory@example.com")

    assert found["user"]["id"] == "U0ALICE"
    assert raised.value.response["error"] == "users_not_found"


async def test_deactivation_yields_a_user_change_event(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    emu.add_user("U0ALICE")
    emu.add_usergroup("S0LEADS", "platform-leads", ["U0ALICE", "U0BOB"])

    event = emu.deactivate_user("U0ALICE")

    assert event["type"] == "user_change"
    assert event["user"]["deleted"] is True
    assert (await client.users_info(user="U0ALICE"))["user"]["deleted"] is True
    assert (await client.usergroups_users_list(usergroup="S0LEADS"))["users"] == ["U0BOB"]


async def test_usergroup_handles_resolve_to_members(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    emu.add_usergroup("S0LEADS", "@platform-leads", ["U0ALICE", "U0BOB"])
    emu.add_usergroup("S0SRE", "sre-oncall", ["U0CAROL"])

    groups = (await client.usergroups_list())["usergroups"]
    by_handle = {g["handle"]: g["id"] for g in groups}
    members = await client.usergroups_users_list(usergroup=by_handle["platform-leads"])

    assert by_handle == {"platform-leads": "S0LEADS", "sre-oncall": "S0SRE"}
    assert "users" not in groups[0]
    assert members["users"] == ["U0ALICE", "U0BOB"]
    with pytest.raises(SlackApiError, match="no_such_subteam"):
        await client.usergroups_users_list(usergroup="S0NOPE")


# --------------------------------------------------------------------------- views


async def test_views_open_update_and_publish(emu: SlackEmulator, client: AsyncWebClient) -> None:
    modal = _modal("access_request_modal", "Request access")

    opened = await client.views_open(trigger_id="123.456.abc", view=modal)
    view_id = opened["view"]["id"]
    updated = await client.views_update(
        view_id=view_id, hash=opened["view"]["hash"], view=_modal("access_request_modal", "Sent")
    )
    home = await client.views_publish(user_id="U0ALICE", view={"type": "home", "blocks": []})

    assert opened["view"]["callback_id"] == "access_request_modal"
    assert updated["view"]["id"] == view_id
    assert emu.views[view_id]["title"]["text"] == "Sent"
    assert home["view"]["id"] == emu.home_view("U0ALICE")["id"]  # type: ignore[index]


async def test_view_limits_are_enforced(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as raised:
        await client.views_open(trigger_id="1.2.3", view=_modal("cb", "A title over 24 characters"))

    assert raised.value.response["error"] == "invalid_arguments"
    assert "/view/title/text" in raised.value.response["response_metadata"]["messages"][0]


# --------------------------------------------------------------------------- response_url


async def test_response_url_posts_are_recorded(emu: SlackEmulator) -> None:
    url = emu.new_response_url()

    status, _ = await raw_post(url, json={"text": "done", "response_type": "ephemeral"})

    (call,) = await emu.wait_for(RESPONSE_URL)
    assert status == 200
    assert call.params["text"] == "done"
    assert call.params["response_url"] == url


# --------------------------------------------------------------------------- Socket Mode


class SocketRecorder:
    """Listeners for slack_sdk's SocketModeClient that keep what arrives."""

    def __init__(self) -> None:
        self.message_types: list[str | None] = []
        self.requests: list[SocketModeRequest] = []

    async def on_message(
        self, client: AsyncBaseSocketModeClient, message: dict[str, Any], raw: str | None
    ) -> None:
        self.message_types.append(message.get("type"))

    async def on_request(self, client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        self.requests.append(req)
        payload = {"text": "working on it"} if req.type == "slash_commands" else None
        await client.send_socket_mode_response(SocketModeResponse(req.envelope_id, payload))


@pytest.fixture
async def socket_client(
    emu: SlackEmulator,
) -> AsyncIterator[tuple[SocketModeClient, SocketRecorder]]:
    recorder = SocketRecorder()
    sm = SocketModeClient(app_token=APP_TOKEN, web_client=AsyncWebClient(base_url=emu.base_url))
    sm.message_listeners.append(recorder.on_message)
    sm.socket_mode_request_listeners.append(recorder.on_request)
    await sm.connect()
    yield sm, recorder
    await sm.close()


async def test_socket_mode_connects_with_the_app_token_and_gets_hello(
    emu: SlackEmulator, socket_client: tuple[SocketModeClient, SocketRecorder]
) -> None:
    _, recorder = socket_client

    await emu.wait_socket_connected()
    await eventually(lambda: "hello" in recorder.message_types)

    (call,) = emu.calls_to("apps.connections.open")
    assert call.token == APP_TOKEN
    assert emu.socket_connections == 1


async def test_socket_mode_envelope_is_delivered_and_acked(
    emu: SlackEmulator, socket_client: tuple[SocketModeClient, SocketRecorder]
) -> None:
    _, recorder = socket_client
    payload = event_callback_payload({"type": "app_mention", "text": "hi"}, event_id="Ev01")

    envelope_id = await emu.socket_send("events_api", payload)
    ack = await emu.wait_socket_ack(envelope_id)

    assert ack is None
    (req,) = recorder.requests
    assert (req.type, req.envelope_id) == ("events_api", envelope_id)
    assert req.payload["event_id"] == "Ev01"
    assert req.retry_attempt == 0


async def test_socket_mode_ack_payload_comes_back(
    emu: SlackEmulator, socket_client: tuple[SocketModeClient, SocketRecorder]
) -> None:
    _, recorder = socket_client
    command = slash_command_payload("/access", "list", "U0ALICE")

    envelope_id = await emu.socket_send("slash_commands", command)
    ack = await emu.wait_socket_ack(envelope_id)

    assert ack == {"text": "working on it"}
    assert recorder.requests[0].accepts_response_payload is True
    assert recorder.requests[0].payload["command"] == "/access"


async def test_socket_mode_client_reconnects_on_disconnect(
    emu: SlackEmulator, socket_client: tuple[SocketModeClient, SocketRecorder]
) -> None:
    _, recorder = socket_client
    await eventually(lambda: recorder.message_types.count("hello") == 1)

    await emu.socket_disconnect()
    await eventually(lambda: recorder.message_types.count("hello") == 2)
    await eventually(lambda: emu.socket_connections == 1)
    envelope_id = await emu.socket_send("events_api", event_callback_payload({"type": "x"}))

    assert await emu.wait_socket_ack(envelope_id) is None
    assert len(emu.calls_to("apps.connections.open")) == 2


async def test_bot_token_cannot_open_a_socket(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError, match="not_allowed_token_type"):
        await client.apps_connections_open(app_token=BOT_TOKEN)


async def test_bolt_app_runs_over_the_emulated_socket(emu: SlackEmulator) -> None:
    app = AsyncApp(client=AsyncWebClient(token=BOT_TOKEN, base_url=emu.base_url))

    @app.command("/access")
    async def access(ack: AsyncAck, say: AsyncSay, command: dict[str, Any]) -> None:
        await ack("on it")
        await say(f"hello <@{command['user_id']}>")

    handler = AsyncSocketModeHandler(app, APP_TOKEN)
    await handler.connect_async()
    try:
        command = slash_command_payload("/access", "list", "U0ALICE", channel_id="C0GENERAL")
        envelope_id = await emu.socket_send("slash_commands", command)
        ack = await emu.wait_socket_ack(envelope_id)
        (said,) = await emu.wait_for("chat.postMessage")
    finally:
        await handler.close_async()

    assert ack == {"text": "on it"}
    assert emu.calls_to("auth.test"), "Bolt checks its token with auth.test first"
    assert emu.messages("C0GENERAL")[0]["text"] == "hello <@U0ALICE>"
    assert said.token == BOT_TOKEN


# --------------------------------------------------------------------------- signing helper


def _verify(body: bytes, headers: dict[str, str], secret: str = SECRET) -> bool:
    verifier = SignatureVerifier(secret)
    ts, sig = headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    return verifier.is_valid(body, ts, sig) and verifier.is_valid_request(body, headers)


def test_signatures_are_accepted_by_slack_sdk() -> None:
    body = slash_command_body("/access", "request view -d 2h debugging", "U0ALICE")
    headers = sign(SECRET, body)

    assert headers["X-Slack-Signature"].startswith("v0=")
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert _verify(body, headers)
    assert not _verify(body + b"&x=1", headers)
    assert not _verify(body, headers, secret="another-secret")


def test_stale_timestamp_is_rejected_by_slack_sdk() -> None:
    body = url_verification_body("challenge-me")
    headers = sign(SECRET, body, timestamp=int(time.time()) - 301)

    assert headers["Content-Type"] == "application/json"
    assert not _verify(body, headers)


def test_signature_matches_slacks_documented_example() -> None:
    # https://api.slack.com/authentication/verifying-requests-from-slack
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
        b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook"
        b"-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F39"
        b"7700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d"
        b"10d2c447fce8b6703c"
    )
    headers = sign(SECRET, body, timestamp=1531420618)

    assert headers["X-Slack-Signature"] == (
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    )


async def test_bolt_accepts_signed_requests_and_rejects_tampered_ones(
    client: AsyncWebClient,
) -> None:
    app = AsyncApp(signing_secret=SECRET, client=client)
    clicked: list[str] = []

    @app.action("access_approve")
    async def approve(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        clicked.append(body["actions"][0]["value"])

    body = block_actions_body("access_approve", "req-1", "U0BOSS", "C0APPROVALS", "1.000001")
    good = await app.async_dispatch(_bolt_request(body, sign(SECRET, body)))
    bad = await app.async_dispatch(_bolt_request(body, sign("wrong-secret", body)))

    assert (good.status, bad.status) == (200, 401)
    assert clicked == ["req-1"]


def _bolt_request(body: bytes, headers: dict[str, str]) -> AsyncBoltRequest:
    return AsyncBoltRequest(body=body.decode(), headers=headers)


def test_slash_command_body_fields() -> None:
    url = "http://127.0.0.1:1/response/abc"
    body = slash_command_body("/k8s", "nodes -c prod", "U0ALICE", response_url=url)

    fields = {k: v[0] for k, v in parse_qs(body.decode()).items()}

    assert fields["command"] == "/k8s"
    assert fields["text"] == "nodes -c prod"
    assert fields["user_id"] == "U0ALICE"
    assert fields["response_url"] == url
    expected = {"token", "team_id", "channel_id", "user_name", "trigger_id"}
    assert expected <= fields.keys()


def test_block_actions_body_clicks_a_real_button() -> None:
    message = {"type": "message", "ts": "1700000000.000100", "blocks": [_buttons("req-9")]}

    body = block_actions_body(
        "access_approve", "req-9", "U0BOSS", "C0APPROVALS", "1700000000.000100", message=message
    )
    payload = json.loads(parse_qs(body.decode())["payload"][0])

    (action,) = payload["actions"]
    assert payload["type"] == "block_actions"
    assert payload["container"]["message_ts"] == "1700000000.000100"
    assert payload["container"]["channel_id"] == "C0APPROVALS"
    assert payload["message"] == message
    assert payload["user"]["id"] == "U0BOSS"
    assert {"trigger_id", "response_url"} <= payload.keys()
    assert (action["action_id"], action["value"], action["type"]) == (
        "access_approve",
        "req-9",
        "button",
    )
    assert action["block_id"] == "decision"
    assert action["text"]["text"] == "Approve"


def test_view_submission_body_state_values() -> None:
    values = {
        "role": {"role_select": static_select("edit")},
        "reason": {"reason_input": text_input("deploy hotfix")},
    }

    body = view_submission_body("access_request_modal", values, "U0ALICE", private_metadata="m")
    payload = json.loads(parse_qs(body.decode())["payload"][0])

    view = payload["view"]
    assert payload["type"] == "view_submission"
    assert view["callback_id"] == "access_request_modal"
    assert view["private_metadata"] == "m"
    assert view["state"]["values"]["role"]["role_select"]["selected_option"]["value"] == "edit"
    assert view["state"]["values"]["reason"]["reason_input"]["value"] == "deploy hotfix"


def test_event_callback_body_envelope() -> None:
    event = {"type": "user_change", "user": {"id": "U0ALICE", "deleted": True}}

    envelope = json.loads(event_callback_body(event, event_id="Ev123"))

    assert envelope["type"] == "event_callback"
    assert envelope["event_id"] == "Ev123"
    assert envelope["team_id"] == TEAM_ID
    assert isinstance(envelope["event_time"], int)
    assert envelope["event"]["user"] == event["user"]
    assert {"api_app_id", "authorizations"} <= envelope.keys()


# --------------------------------------------------------------------------- block helpers


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _buttons(value: str) -> dict[str, Any]:
    def button(action_id: str, label: str) -> dict[str, Any]:
        text = {"type": "plain_text", "text": label}
        return {"type": "button", "action_id": action_id, "text": text, "value": value}

    elements = [button("access_approve", "Approve"), button("access_deny", "Deny")]
    return {"type": "actions", "block_id": "decision", "elements": elements}


def _modal(callback_id: str, title: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Request"},
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {"type": "plain_text_input", "action_id": "reason_input"},
            }
        ],
    }
