"""``accessbot serve`` as an operator starts it, with the Slack emulator in Slack's place.

Used by benchmarks 1 (ack latency), 2 (approval click to kubeconfig) and 6 (RSS). The
bot is a real ``python -m bot serve`` subprocess (tests/support/serve_proc.py) in HTTP
mode with serve's defaults (JSON logs at INFO), talking to the emulator on 127.0.0.1,
to this run's Redis and to apiservers a and b. Requests are signed as Slack signs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from bench.common import Env, wait_for
from bench.loadgen import Click, LoadResult, LoadSpec, run_in_child
from bot.lifecycle import State
from bot.models import Grant
from bot.scheduler import Scheduler
from bot.store import Store
from tests.slack.support import populate
from tests.support.harness import POLICY
from tests.support.serve_proc import ServeProcess
from tests.support.slack_emulator import RESPONSE_URL, ChannelLimit, SlackEmulator
from tests.support.slack_signing import block_actions_body, sign, slash_command_body

# What one Slack Web API call costs in the benchmarks (issue 16: 100 ms).
SLACK_LATENCY_SECONDS = 0.1

BOT_TOKEN = "xoxb-bench"  # fake; the emulator takes any xoxb- token
SECRET = "accessbot-bench-signing-secret"
APPROVALS = "C0APPROVALS"
APPROVER = "U0LEAD"  # may approve role "edit" in the harness policy
REQUESTER = "U0ALICE"
EDIT_REQUEST = "request edit -c a -n team-a -d 1h benchmark"
LIST_COMMAND = "/access list"
FOLLOW_UP_WAIT = 15.0
JSON = dict[str, Any]


@dataclass
class ServeBed:
    emu: SlackEmulator
    serve: ServeProcess
    store: Store  # the bot's Redis, read directly
    http: aiohttp.ClientSession
    _runs: int = 0

    @property
    def events_url(self) -> str:
        return f"{self.serve.url}/slack/events"

    @property
    def pid(self) -> int:
        assert self.serve.proc is not None
        return self.serve.proc.pid

    async def post(self, body: bytes) -> tuple[int, float]:
        """POST a Slack delivery, signed now; returns (status, seconds to the answer).

        An ack with a body is the bot refusing at once (an ephemeral error): that is
        an error here, since the benchmarks only send requests that should go through.
        """
        started = time.monotonic()
        async with self.http.post(self.events_url, data=body, headers=sign(SECRET, body)) as r:
            answer = await r.text()
            took = time.monotonic() - started
        if r.status != 200 or answer:
            raise RuntimeError(f"Slack delivery answered {r.status}: {answer[:500]}")
        return r.status, took

    async def request_edit(self, user: str) -> None:
        """``/access request edit ...``: needs one approval, so a card is posted."""
        body = slash_command_body(
            "/access", EDIT_REQUEST, user, response_url=self.emu.new_response_url()
        )
        await self.post(body)

    async def pending_card(self, user: str, timeout: float = 30) -> tuple[Grant, JSON]:
        """The user's newest pending request once its approval card is posted."""

        async def posted() -> tuple[Grant, JSON] | None:
            grants = await self.store.by_user(user)
            pending = [g for g in grants if g.state == State.PENDING and g.card is not None]
            if not pending:
                return None
            grant = pending[-1]
            assert grant.card is not None
            cards = [m for m in self.emu.messages(APPROVALS) if m.get("ts") == grant.card.ts]
            return (grant, cards[0]) if cards else None

        return await wait_for(posted, timeout, f"approval card for {user}")

    def approve_body(self, grant_id: str, card: JSON, user: str = APPROVER) -> bytes:
        return block_actions_body(
            "access_approve",
            grant_id,
            user,
            APPROVALS,
            str(card["ts"]),
            message=card,
            response_url=self.emu.new_response_url(),
        )

    async def stale_click(self, user: str) -> Click:
        """An approve click on a request already approved and provisioned (changes nothing)."""
        grant_id, card = await self.decided_card(user)
        return Click("access_approve", grant_id, APPROVER, APPROVALS, card)

    async def load(
        self, scratch: Path, *, rate: float, duration: float, kinds: Sequence[str], click: Click
    ) -> tuple[LoadResult, int]:
        """One open-loop run from a child process; returns it and the follow-ups that came.

        A follow-up is the bot's answer on the request's response_url, posted after the ack;
        they are awaited for up to FOLLOW_UP_WAIT seconds after the last request.
        """
        self._runs += 1
        tag = f"run{self._runs}"
        spec = LoadSpec(
            url=self.events_url,
            secret=SECRET,
            rate=rate,
            duration=duration,
            kinds=list(kinds),
            command=LIST_COMMAND,
            command_user=REQUESTER,
            click=click,
            response_base=f"{self.emu.root_url}response/",
            tag=tag,
        )
        result = await run_in_child(spec, scratch)
        expected = result.sent - sum(result.errors.values())
        # Fewer follow-ups than requests is a finding, reported as such: no error here.
        with contextlib.suppress(TimeoutError):
            await wait_for(lambda: self._follow_ups(tag, expected), FOLLOW_UP_WAIT, "follow-ups")
        return result, self._count_follow_ups(tag)

    async def _follow_ups(self, tag: str, expected: int) -> bool:
        return self._count_follow_ups(tag) >= expected

    def _count_follow_ups(self, tag: str) -> int:
        marker = f"/response/{tag}-"
        calls = self.emu.calls_to(RESPONSE_URL)
        return sum(1 for c in calls if marker in str(c.params.get("response_url", "")))

    async def decided_card(self, user: str) -> tuple[str, JSON]:
        """A request approved and provisioned: clicking its card again changes nothing."""
        await self.request_edit(user)
        grant, card = await self.pending_card(user)
        await self.post(self.approve_body(grant.id, card))

        async def active() -> bool:
            current = await self.store.get(grant.id)
            return current is not None and current.state == State.ACTIVE

        await wait_for(active, 60, f"grant {grant.id} active")
        return grant.id, card


def bench_users(n: int) -> list[str]:
    return [f"U0BENCH{i:03d}" for i in range(n)]


def _serve_env(env: Env, emu: SlackEmulator, redis_url: str, kubeconfig: str) -> dict[str, str]:
    policy = env.root / "serve-policy.yaml"
    policy.write_text(POLICY)
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": emu.base_url,
        "REDIS_URL": redis_url,
        "ACCESSBOT_POLICY": str(policy),
        "KUBECONFIG": kubeconfig,
        "ACCESSBOT_DATA_DIR": str(env.root / "serve-data"),
        "ACCESSBOT_LOG_FORMAT": "json",  # serve's default; ServeProcess would pick console
    }


@asynccontextmanager
async def serve_bed(env: Env, users: Sequence[str] = ()) -> AsyncIterator[ServeBed]:
    """A fresh ``accessbot serve`` on an empty Redis, the emulator knowing ``users``."""
    kubeconfig = await env.workflow_kubeconfig()
    redis_url = await env.redis_url()
    workdir = Path(tempfile.mkdtemp(prefix="serve-", dir=env.root))
    # Slack as users get it (issue 16): every call takes SLACK_LATENCY_SECONDS and
    # each channel takes about one post a second (429 with Retry-After beyond).
    async with SlackEmulator(channel_limit=ChannelLimit(), latency=SLACK_LATENCY_SECONDS) as emu:
        populate(emu)
        for user in users:
            emu.add_user(user, name=user.lower(), email=f"{user.lower()}@example.com")
        serve = ServeProcess(_serve_env(env, emu, redis_url, str(kubeconfig)), workdir)
        await asyncio.to_thread(serve.start, 60.0)
        redis = Redis.from_url(redis_url, decode_responses=True)
        connector = aiohttp.TCPConnector(limit=0)
        try:
            async with aiohttp.ClientSession(connector=connector) as http:
                yield ServeBed(emu, serve, Store(redis, Scheduler(redis)), http)
        finally:
            await asyncio.to_thread(serve.terminate)
            await redis.aclose()
