"""DMs and the kubeconfig upload under Slack's rate limits (issue 16, item 6): the bot
waits what ``Retry-After`` says and tries again; nothing is dropped.

The client's ``AsyncRateLimitErrorRetryHandler`` (bot/slack/client.py) retries a 429
five times, waiting ``Retry-After`` each time; past that the messenger keeps waiting
(bot/slack/retry_after.py), and a kubeconfig upload that still fails ``ratelimited``
is a transient failure the provisioning job runs again. The emulator's per-channel
limit (about one post per second per channel) makes the 429s, as Slack does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from slack_sdk.errors import SlackApiError

from bot.lifecycle import State
from bot.slack.blocks import info_message
from bot.slack.messenger import DeliveryFailed
from tests.slack.support import populate
from tests.slack.test_blocks import grant
from tests.slack.test_directory_notifier import notifier_for
from tests.support.slack_emulator import ChannelLimit, SlackEmulator


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator(channel_limit=ChannelLimit(per_second=1, burst=1)) as emulator:
        populate(emulator)
        yield emulator


async def test_a_dm_waits_out_retry_after_and_is_delivered(emu: SlackEmulator) -> None:
    notifier = notifier_for(emu)
    emu.rate_limit("chat.postMessage", retry_after=1, times=2)
    await notifier.send_dm("U0ALICE", info_message("first, after two 429s"))
    statuses = [c.status for c in emu.calls_to("chat.postMessage")]
    assert statuses == [429, 429, 200]
    assert [m["text"] for m in emu.messages(emu.dm_channel("U0ALICE"))] == ["first, after two 429s"]


async def test_many_dms_to_one_person_at_once_all_arrive(emu: SlackEmulator) -> None:
    """Twelve DMs racing for one channel that takes one a second: most are refused
    again and again (more often than the client's five retries), none is dropped."""
    notifier = notifier_for(emu)
    texts = [f"grant {n:02d} ended" for n in range(12)]
    await asyncio.gather(*(notifier.send_dm("U0ALICE", info_message(t)) for t in texts))
    delivered = [m["text"] for m in emu.messages(emu.dm_channel("U0ALICE"))]
    assert sorted(delivered) == texts  # each once
    refused = [c for c in emu.calls_to("chat.postMessage") if c.status == 429]
    assert len(refused) > 5  # Slack did push back, and Retry-After was honoured
    assert emu.messages(emu.dm_channel("U0ADMIN")) == []  # nothing to alert about


async def test_a_kubeconfig_upload_waits_out_retry_after_and_is_delivered(
    emu: SlackEmulator,
) -> None:
    notifier = notifier_for(emu)
    emu.rate_limit("files.getUploadURLExternal", retry_after=1, times=2)
    emu.rate_limit("files.completeUploadExternal", retry_after=1, times=2)
    file_id = await notifier.deliver_kubeconfig(
        grant(State.PROVISIONING), "a-edit.kubeconfig", b"token: s3cret"
    )
    (upload,) = emu.uploaded_files
    assert upload.file_id == file_id
    assert upload.content == b"token: s3cret"
    assert upload.channel_id == emu.dm_channel("U0ALICE")
    for method in ("files.getUploadURLExternal", "files.completeUploadExternal"):
        assert [c.status for c in emu.calls_to(method)] == [429, 429, 200]
    assert "s3cret" not in json.dumps(
        [c.params for c in emu.calls if c.method != "upload_url"], default=str
    )


async def test_an_upload_answered_5xx_is_tried_again_later_not_failed(emu: SlackEmulator) -> None:
    # A proxy's bare 503 past the client's own retries: transient, so the delivery step
    # raises Slack's error (the scheduler runs it again) instead of DeliveryFailed, which
    # would fail the grant for good.
    notifier = notifier_for(emu)
    emu.server_error("files.getUploadURLExternal", 503, times=3)
    with pytest.raises(SlackApiError) as info:
        await notifier.deliver_kubeconfig(grant(State.PROVISIONING), "a.kubeconfig", b"x")
    assert not isinstance(info.value, DeliveryFailed)
    assert emu.uploaded_files == []
    file_id = await notifier.deliver_kubeconfig(grant(State.PROVISIONING), "a.kubeconfig", b"x")
    assert [u.file_id for u in emu.uploaded_files] == [file_id]
