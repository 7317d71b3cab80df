"""4. Offboarding: one user holding grants on two clusters, removed by the HR webhook.

The grants are made for real (auto-approved requests provisioned on two apiservers).
The webhook is the real HTTP service (bot/http/app.py) on 127.0.0.1, called with a
signed body as an HR system would. Measured: the webhook's response time (it answers
after the revocations are done) and the time until the last of the user's objects is
gone from both apiservers, polled with ``k8s.grants.list_managed``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import (
    WORKFLOW_CLUSTERS,
    BenchResult,
    Env,
    Table,
    Target,
    median,
    provision,
    rounded,
    view_request,
    wait_for,
    workflow_core,
)
from bench.profiling import sampling
from bot.core import Core
from bot.http import signing
from bot.http.app import HttpService
from bot.metrics import Metrics
from bot.policy import AccessRequestSpec
from k8s import grants as k8s_grants
from tests.support.cluster import free_port

NAME = "offboard"
TITLE = "4. Offboarding"
SECRET = "bench-offboard-secret"
USER, EMAIL = "U0BOB", "bob@example.com"  # known to the harness directory


@dataclass(frozen=True)
class Params:
    grants: int  # split evenly over clusters a and b
    repeats: int


FULL = Params(grants=50, repeats=3)
QUICK = Params(grants=4, repeats=1)


@dataclass(frozen=True)
class Round:
    grants: int
    objects: int  # on the apiservers before the call
    status: int
    revoked: int
    response_s: float
    all_gone_s: float


async def run(env: Env) -> BenchResult:
    p = env.scaled(FULL, QUICK)
    rounds: list[Round] = []
    async with workflow_core(env) as core, _webhook(core) as url:
        for i in range(p.repeats):
            await core.store.reenable(USER)
            await provision(core, _requests(p.grants, i), timeout=120)
            profile_to = env.results_dir / f"{NAME}.profile.txt"
            with sampling(os.getpid(), profile_to, enabled=env.profile and i == p.repeats - 1):
                rounds.append(await _offboard_once(core, url, p.grants))
    return _result(p, rounds)


def _requests(n: int, round_no: int) -> list[AccessRequestSpec]:
    clusters = WORKFLOW_CLUSTERS
    return [
        view_request(USER, clusters[i % len(clusters)], f"bench offboard {round_no}-{i}")
        for i in range(n)
    ]


@asynccontextmanager
async def _webhook(core: Core) -> AsyncIterator[str]:
    """The HTTP service as ``serve`` runs it, on a free 127.0.0.1 port."""
    app = HttpService(core, Metrics(), offboard_secret=SECRET).build()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hooks/offboard"
    finally:
        await runner.cleanup()


async def _objects_of(core: Core, user: str) -> int:
    found = await asyncio.gather(*(k8s_grants.list_managed(c) for c in core.clusters))
    return sum(1 for objs in found for o in objs if o.requester == user)


async def _offboard_once(core: Core, url: str, grants: int) -> Round:
    objects = await _objects_of(core, USER)
    body = json.dumps({"email": EMAIL, "reason": "benchmark"}).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-AccessBot-Timestamp": timestamp,
        "X-AccessBot-Signature": signing.sign(SECRET, timestamp, body),
    }
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        async with http.post(url, data=body, headers=headers) as resp:
            answer = await resp.json()
            response_s = time.monotonic() - started
    await wait_for(
        lambda: _none_left(core), timeout=60, what="offboarded user's objects gone", interval=0.02
    )
    return Round(
        grants=grants,
        objects=objects,
        status=resp.status,
        revoked=len(answer.get("revoked", [])),
        response_s=response_s,
        all_gone_s=time.monotonic() - started,
    )


async def _none_left(core: Core) -> bool:
    return await _objects_of(core, USER) == 0


def _result(p: Params, rounds: list[Round]) -> BenchResult:
    response = median(r.response_s for r in rounds)
    gone = median(r.all_gone_s for r in rounds)
    rows: list[dict[str, Any]] = [
        {
            "round": i + 1,
            "grants": r.grants,
            "objects before": r.objects,
            "HTTP status": r.status,
            "revoked": r.revoked,
            "webhook response s": rounded(r.response_s, 3),
            "all objects gone s": rounded(r.all_gone_s, 3),
        }
        for i, r in enumerate(rounds)
    ]
    rows.append(
        {
            "round": "median",
            "webhook response s": rounded(response, 3),
            "all objects gone s": rounded(gone, 3),
        }
    )
    return BenchResult(
        name=NAME,
        title=TITLE,
        tables=[
            Table(
                f"Offboarding a user with {p.grants} grants on 2 clusters (HR webhook)",
                [
                    "round",
                    "grants",
                    "objects before",
                    "HTTP status",
                    "revoked",
                    "webhook response s",
                    "all objects gone s",
                ],
                rows,
            )
        ],
        targets=[Target("offboarding: all objects gone", 5.0, rounded(gone, 3), "s")],
        notes=[
            "The webhook answers after the revocations are done, so 'all gone' is the "
            "response time plus one poll of both apiservers (list_managed, ~20 ms apart).",
        ],
        data={"params": p.__dict__, "rounds": [r.__dict__ for r in rounds]},
    )
