"""A hung Redis (SIGSTOP) must not cost Slack its answer, nor a deactivation its effect.

The bot runs against its own real redis-server, which the test freezes with
SIGSTOP and thaws with SIGCONT. The failure detector is a generous client
timeout: a delivery without an HTTP answer within it has failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bot.lifecycle import State
from bot.models import Grant
from bot.redis_server import RedisProcess
from tests.slack.support import SECRET, SlackBed, slack_bed
from tests.support.cluster import TestCluster
from tests.support.slack_signing import (
    event_callback_body,
    retry_headers,
    sign,
    slash_command_body,
    text_input,
    view_submission_body,
)

# Seconds. Only detects "never answered" (the unbounded Redis wait this guards
# against hangs until SIGCONT); how fast Slack is answered is bench/ack.py's business.
NO_ANSWER = 60.0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    redis = RedisProcess(tmp_path / "r", appendonly=False).start()
    yield redis
    pid = _pid(redis)
    if pid is not None:
        os.kill(pid, signal.SIGCONT)  # never leave a frozen server behind
    redis.stop()


def _pid(redis: RedisProcess) -> int | None:
    proc = redis._proc
    return proc.pid if proc is not None and proc.poll() is None else None


async def post(bed: SlackBed, body: bytes, headers: dict[str, str] | None = None) -> int:
    timeout = aiohttp.ClientTimeout(total=NO_ANSWER)
    all_headers = {**sign(SECRET, body), **(headers or {})}
    started = time.monotonic()
    async with bed.http.post(bed.url, data=body, headers=all_headers, timeout=timeout) as resp:
        await resp.read()
        print(f"answered {resp.status} after {time.monotonic() - started:.2f}s with Redis stopped")
        return resp.status


async def wait_logged(caplog: pytest.LogCaptureFixture, needle: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(needle in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, f"never logged {needle!r}"
        await asyncio.sleep(0.1)


async def test_deliveries_answered_while_redis_hangs_and_offboarding_resumes(
    own_redis: RedisProcess,
    cluster: TestCluster,
    cluster_b: TestCluster,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.slack")
    async with slack_bed(own_redis.url, {"a": cluster, "b": cluster_b}, tmp_path) as bed:
        grant, pid = await _active_then_redis_stopped(bed, own_redis)
        try:
            deactivated = event_callback_body(bed.emu.deactivate_user("U0ALICE"), "Ev0STALL1")
            assert await post(bed, deactivated) == 200
            # Slack's retry of the same delivery, and an unrelated status change.
            assert await post(bed, deactivated, retry_headers(1)) == 200
            status = event_callback_body(bed.emu.change_status("U0BOB"))
            assert await post(bed, status) == 200
            # Commands and forms (whose check reads Redis before the ack) are answered too.
            await _command_and_form_answered(bed, grant.id)
            # The offboarding has found Redis hung (not merely queued behind it).
            await wait_logged(caplog, "offboarding U0ALICE waits for Redis", timeout=60)
        finally:
            os.kill(pid, signal.SIGCONT)

        # Once Redis answers again, the deactivation takes effect on its own.
        revoked = await bed.wait_grant(grant.id, State.REVOKED, timeout=120)
        assert revoked.state == State.REVOKED
        offboarding = await bed.core.store.offboarding("U0ALICE")
        assert offboarding is not None
        assert offboarding.by == "slack"


async def test_every_delivery_answered_when_redis_calls_never_return(
    own_redis: RedisProcess, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    """'Whatever Redis does': with the client's own timeout far beyond NO_ANSWER, no
    Redis call returns while the server is stopped, so every answer comes from the
    de-duplication's fallback and the HTTP layer's deadline, not from a timeout."""
    never = f"{own_redis.url}?socket_timeout=3600"
    async with slack_bed(never, {"a": cluster, "b": cluster_b}, tmp_path) as bed:
        grant, pid = await _active_then_redis_stopped(bed, own_redis)
        try:
            status = event_callback_body(bed.emu.change_status("U0BOB"), "Ev0NEVER1")
            assert await post(bed, status) == 200
            assert await post(bed, status, retry_headers(1)) == 200
            deactivated = event_callback_body(bed.emu.deactivate_user("U0ALICE"), "Ev0NEVER2")
            assert await post(bed, deactivated) == 200
            await _command_and_form_answered(bed, grant.id)
        finally:
            os.kill(pid, signal.SIGCONT)
        # The work held up behind the stopped server goes on once it answers.
        revoked = await bed.wait_grant(grant.id, State.REVOKED, timeout=120)
        assert revoked.state == State.REVOKED


async def _command_and_form_answered(bed: SlackBed, grant_id: str) -> None:
    """A slash command and an extend form (its check reads Redis before the ack) are
    both answered 200."""
    listing = slash_command_body(
        "/access", "list", "U0BOB", response_url=bed.emu.new_response_url()
    )
    assert await post(bed, listing) == 200
    extend = view_submission_body(
        "access_extend_modal",
        {"duration": {"value": text_input("1h")}},
        "U0BOB",
        private_metadata=json.dumps({"grant": grant_id}),
    )
    assert await post(bed, extend) == 200


async def _active_then_redis_stopped(bed: SlackBed, redis: RedisProcess) -> tuple[Grant, int]:
    """U0ALICE's active view grant, then the bot's redis-server SIGSTOPped; its pid."""
    await bed.command("request view -c a -n team-a -d 1h reading logs", "U0ALICE")
    grant = await bed.only_grant("U0ALICE")
    await bed.wait_grant(grant.id, State.ACTIVE)
    pid = _pid(redis)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    return grant, pid
