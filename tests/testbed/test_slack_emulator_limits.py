"""The emulator's model of Slack under load: the per-channel posting limit (429 with
``Retry-After``) and a latency on every call, both off unless a test opts in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.slack_emulator import ChannelLimit, SlackEmulator

BOT_TOKEN = "xoxb-1-emulator-test"


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator(channel_limit=ChannelLimit(per_second=1, burst=3)) as emulator:
        yield emulator


def bare_client(emu: SlackEmulator) -> AsyncWebClient:
    """No retry handlers: every 429 reaches the caller."""
    return AsyncWebClient(token=BOT_TOKEN, base_url=emu.base_url, retry_handlers=[])


async def test_a_channel_takes_its_burst_then_answers_429_with_retry_after(
    emu: SlackEmulator,
) -> None:
    client = bare_client(emu)
    for n in range(3):
        await client.chat_postMessage(channel="C1", text=f"burst {n}")
    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel="C1", text="one too many")
    assert raised.value.response.status_code == 429
    assert raised.value.response["error"] == "ratelimited"
    assert int(raised.value.response.headers["Retry-After"]) >= 1
    # The refused post changed nothing; another channel has its own bucket.
    assert [m["text"] for m in emu.messages("C1")] == ["burst 0", "burst 1", "burst 2"]
    await client.chat_postMessage(channel="C2", text="elsewhere")
    assert len(emu.messages("C2")) == 1
    (refused,) = [c for c in emu.calls_to("chat.postMessage") if c.status == 429]
    assert refused.error == "ratelimited"
    # Other methods are not limited per channel.
    for _ in range(5):
        await client.auth_test()


async def test_retry_after_honoured_delivers_every_post(emu: SlackEmulator) -> None:
    emu.limit_channels(per_second=1, burst=1)
    client = AsyncWebClient(
        token=BOT_TOKEN,
        base_url=emu.base_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=5)],
    )
    for n in range(3):
        await client.chat_postMessage(channel="C1", text=f"post {n}")
    assert [m["text"] for m in emu.messages("C1")] == ["post 0", "post 1", "post 2"]
    statuses = [c.status for c in emu.calls_to("chat.postMessage")]
    assert statuses.count(200) == 3
    assert 429 in statuses  # the bucket held one post: the others waited Retry-After


async def test_limits_are_off_by_default_and_can_be_turned_off() -> None:
    async with SlackEmulator() as plain:
        client = bare_client(plain)
        for n in range(20):
            await client.chat_postMessage(channel="C1", text=f"{n}")
        assert len(plain.messages("C1")) == 20
        plain.limit_channels(per_second=1, burst=1)
        await client.chat_postMessage(channel="C1", text="first")
        with pytest.raises(SlackApiError):
            await client.chat_postMessage(channel="C1", text="second")
        plain.unlimit_channels()
        await client.chat_postMessage(channel="C1", text="third")
        assert [m["text"] for m in plain.messages("C1")][-2:] == ["first", "third"]


async def test_latency_holds_every_answer(emu: SlackEmulator) -> None:
    emu.set_latency(3.0)
    client = bare_client(emu)
    call = asyncio.ensure_future(client.auth_test())
    await emu.wait_started("auth.test")
    # Arrived, not yet answered: Slack is "far away".
    assert emu.calls_to("auth.test") == []
    assert not call.done()
    assert (await call)["ok"] is True
    emu.set_latency(0)
    with pytest.raises(ValueError, match="negative"):
        emu.set_latency(-1)
