"""SlackDirectory and SlackNotifier against the Slack emulator (no cluster needed)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from slack_sdk.errors import SlackApiError

from bot.lifecycle import State
from bot.models import Step
from bot.policy import parse_policy
from bot.slack import SlackDirectory, SlackNotifier, make_slack_client
from bot.slack.notifier import DeliveryFailed
from tests.slack.support import BOT_TOKEN, POLICY, populate
from tests.slack.test_blocks import grant
from tests.support.slack_emulator import SlackEmulator

POL = parse_policy(POLICY)
NOW = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator() as emulator:
        populate(emulator)
        yield emulator


# -- directory ---------------------------------------------------------------------------


async def test_groups_are_fetched_once_and_cached(emu: SlackEmulator) -> None:
    clock = Clock()
    directory = SlackDirectory(
        make_slack_client(BOT_TOKEN, emu.base_url), ttl_seconds=60, clock=clock
    )
    assert await directory.groups_of("U0PL1") == {"platform-leads"}
    assert await directory.groups_of("U0SRE1") == {"sre"}
    assert await directory.groups_of("U0ALICE") == frozenset()
    assert await directory.members_of("@platform-leads") == {"U0PL1", "U0PL2"}
    assert len(emu.calls_to("usergroups.list")) == 1

    emu.add_usergroup("S0PLATFORM", "platform-leads", ["U0PL1", "U0PL2", "U0ALICE"])
    assert await directory.groups_of("U0ALICE") == frozenset()  # still cached
    clock.now += 61
    assert await directory.groups_of("U0ALICE") == {"platform-leads"}
    assert len(emu.calls_to("usergroups.list")) == 2


async def test_stale_groups_are_used_when_slack_fails(emu: SlackEmulator) -> None:
    clock = Clock()
    directory = SlackDirectory(
        make_slack_client(BOT_TOKEN, emu.base_url), ttl_seconds=60, clock=clock
    )
    assert await directory.groups_of("U0PL1") == {"platform-leads"}
    clock.now += 61
    emu.fail("usergroups.list", "missing_scope")
    assert await directory.groups_of("U0PL1") == {"platform-leads"}


async def test_no_groups_at_all_fails_closed(emu: SlackEmulator) -> None:
    directory = SlackDirectory(make_slack_client(BOT_TOKEN, emu.base_url))
    emu.fail("usergroups.list", "missing_scope")
    with pytest.raises(SlackApiError):
        await directory.groups_of("U0PL1")


async def test_truncated_membership_is_completed(emu: SlackEmulator) -> None:
    group = emu.add_usergroup("S0BIG", "big", ["U0A", "U0B"])
    # Pretend Slack cut the inline list short: more members than listed.
    emu._usergroups["S0BIG"]["user_count"] = group["user_count"] + 5
    directory = SlackDirectory(make_slack_client(BOT_TOKEN, emu.base_url))
    assert await directory.members_of("big") == {"U0A", "U0B"}
    assert [c.params["usergroup"] for c in emu.calls_to("usergroups.users.list")] == ["S0BIG"]


async def test_email_and_handle_lookups(emu: SlackEmulator) -> None:
    directory = SlackDirectory(make_slack_client(BOT_TOKEN, emu.base_url))
    assert await directory.user_for_email("Alice@Example.com") == "U0ALICE"
    assert await directory.user_for_email("alice@example.com") == "U0ALICE"
    assert len(emu.calls_to("users.lookupByEmail")) == 1
    assert await directory.user_for_email("nobody@example.com") is None
    assert await directory.handle_of("U0BOB") == "bob.smith"
    assert await directory.handle_of("U0BOB") == "bob.smith"
    assert len(emu.calls_to("users.info")) == 1
    assert await directory.handle_of("U0GHOST") == "u0ghost"  # users.info failed
    directory.forget("U0BOB")
    await directory.handle_of("U0BOB")
    assert len(emu.calls_to("users.info")) == 3


# -- notifier ----------------------------------------------------------------------------


def notifier_for(emu: SlackEmulator, policy_text: str = POLICY) -> SlackNotifier:
    client = make_slack_client(BOT_TOKEN, emu.base_url)
    return SlackNotifier(client, parse_policy(policy_text), clock=lambda: NOW)


async def test_card_is_posted_and_updated_in_place(emu: SlackEmulator) -> None:
    notifier = notifier_for(emu)
    pending = grant(card=None)
    ref = await notifier.post_card(pending)
    assert ref is not None
    assert ref.channel == "C0APPROVALS"
    with_card = pending.model_copy(update={"card": ref, "version": 1})
    await notifier.grant_changed(pending, with_card)
    assert emu.calls_to("chat.update") == []  # only the card reference changed
    approved = with_card.model_copy(
        update={
            "state": State.APPROVED,
            "approvals": ("U0LEAD",),
            "version": 2,
            "history": (
                Step(from_state=State.PENDING, to_state=State.APPROVED, actor="U0LEAD", at=NOW),
            ),
        }
    )
    await notifier.grant_changed(with_card, approved)
    (update,) = emu.calls_to("chat.update")
    assert update.params["ts"] == ref.ts
    (card,) = emu.messages("C0APPROVALS")
    assert "access_approve" not in json.dumps(card["blocks"])
    # A late, older change never overwrites the newer card.
    await notifier.grant_changed(pending, with_card.model_copy(update={"approvals": ("U0X",)}))
    assert len(emu.calls_to("chat.update")) == 1


async def test_audit_channel_gets_every_step(emu: SlackEmulator) -> None:
    notifier = notifier_for(emu)
    created = grant(card=None)
    await notifier.grant_changed(created, created)
    denied = grant(State.DENIED, version=1, card=None)
    await notifier.grant_changed(created, denied)
    await notifier.flush()  # an end is told in the background
    audit = [m["text"] for m in emu.messages("C0AUDIT")]
    assert len(audit) == 2
    assert "requested by" in audit[0]
    assert "*denied*" in audit[1]


async def test_no_audit_channel_no_audit_posts(emu: SlackEmulator) -> None:
    notifier = notifier_for(emu, POLICY.replace("audit_channel: C0AUDIT\n", ""))
    created = grant(card=None)
    await notifier.grant_changed(created, created)
    assert emu.messages("C0AUDIT") == []


async def test_kubeconfig_goes_to_the_dm_as_a_file(emu: SlackEmulator) -> None:
    notifier = notifier_for(emu)
    file_id = await notifier.deliver_kubeconfig(
        grant(State.PROVISIONING), "a-edit.kubeconfig", b"token: s3cret"
    )
    (upload,) = emu.uploaded_files
    assert upload.file_id == file_id
    assert upload.filename == "a-edit.kubeconfig"
    assert upload.channel_id == emu.dm_channel("U0ALICE")
    assert upload.content == b"token: s3cret"
    assert "s3cret" not in json.dumps(
        [c.params for c in emu.calls if c.method != "upload_url"], default=str
    )


async def test_undeliverable_kubeconfig_fails_and_admins_hear(emu: SlackEmulator) -> None:
    notifier = notifier_for(emu)
    emu.fail("files.completeUploadExternal", "missing_scope", needed="files:write")
    with pytest.raises(DeliveryFailed, match="missing_scope"):
        await notifier.deliver_kubeconfig(grant(State.PROVISIONING), "a-edit.kubeconfig", b"x")
    (alert,) = emu.messages(emu.dm_channel("U0ADMIN"))
    assert "files:write" in json.dumps(alert)


async def test_transient_delivery_errors_propagate_for_a_retry(emu: SlackEmulator) -> None:
    notifier = notifier_for(emu)
    emu.fail("files.getUploadURLExternal", "internal_error")
    with pytest.raises(SlackApiError):
        await notifier.deliver_kubeconfig(grant(State.PROVISIONING), "a-edit.kubeconfig", b"x")
    assert emu.messages(emu.dm_channel("U0ADMIN")) == []


async def test_a_failing_message_does_not_stop_the_others(emu: SlackEmulator) -> None:
    notifier = notifier_for(emu)
    before = grant(State.PENDING)
    after = grant(State.DENIED, version=1)
    emu.fail("chat.update", "message_not_found")
    await notifier.grant_changed(before, after)  # never raises
    await notifier.flush()  # an end is told in the background
    assert emu.messages("C0AUDIT")  # the audit post still went out
    assert emu.messages(emu.dm_channel("U0ALICE"))  # and the requester heard


async def test_reminder(emu: SlackEmulator) -> None:
    notifier = notifier_for(emu)
    await notifier.remind(grant(State.ACTIVE, expires_at=NOW + timedelta(minutes=10)))
    (message,) = emu.messages(emu.dm_channel("U0ALICE"))
    assert "in 10m" in message["text"]
    assert "access_extend" in json.dumps(message["blocks"])


async def test_user_exists(emu: SlackEmulator) -> None:
    directory = SlackDirectory(make_slack_client(BOT_TOKEN, emu.base_url))
    emu.deactivate_user("U0BOB")
    assert await directory.user_exists("U0ALICE") is True
    assert await directory.user_exists("U0BOB") is True  # deactivated still counts
    assert await directory.user_exists("U0GHOST") is False
    emu.fail("users.info", "ratelimited")
    with pytest.raises(SlackApiError):
        await directory.user_exists("U0OTHER")


class Errors:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def slack_error(self, method: str, error: str) -> None:
        self.seen.append((method, error))


async def test_failed_calls_are_counted(emu: SlackEmulator) -> None:
    errors = Errors()
    client = make_slack_client(BOT_TOKEN, emu.base_url, metrics=errors)
    emu.rate_limit("chat.postMessage", retry_after=1)
    await client.chat_postMessage(channel="C0APPROVALS", text="hi")  # retried, then fine
    emu.fail("conversations.open", "user_disabled")
    with pytest.raises(SlackApiError):
        await client.conversations_open(users="U0BOB")
    await client.auth_test()
    assert errors.seen == [
        ("chat.postMessage", "ratelimited"),
        ("conversations.open", "user_disabled"),
    ]


def test_http_mode_needs_the_signing_secret() -> None:
    from bot.slack import build_slack_app

    with pytest.raises(ValueError, match="signing secret"):
        build_slack_app(core=None, client=make_slack_client("xoxb-x"), signing_secret=None)  # type: ignore[arg-type]
