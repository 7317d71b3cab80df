"""2. Approval click to kubeconfig file in the requester's DM, through ``accessbot serve``.

Each requester (a distinct Slack user) sends ``/access request edit ...``; once every
approval card is posted, the approver clicks Approve on all of them at once (1 or 100
concurrent clicks). The time runs from each click's send to the emulator's record of
the ``files.completeUploadExternal`` call that shares that grant's kubeconfig in the
DM: objects made on the apiserver, token minted and verified, file uploaded.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from bench.common import BenchResult, CpuMeter, Dist, Env, Table, Target, gather_limited, wait_for
from bench.profiling import sampling
from bench.serve_bed import ServeBed, bench_users, serve_bed

NAME = "approval"
TITLE = "2. Approval click to kubeconfig in the DM"
UPLOAD = "files.completeUploadExternal"
# Issue 16's click-to-DM p99 targets (seconds), by how many approvals run at once.
TARGET_S = {1: 0.4, 100: 2.0}
DEFAULT_TARGET_S = 2.0


@dataclass(frozen=True)
class Params:
    rounds: dict[int, int]  # concurrent approvals -> rounds of them


FULL = Params(rounds={1: 7, 100: 3})
QUICK = Params(rounds={1: 1, 5: 1})


@dataclass(frozen=True)
class Sample:
    concurrency: int
    click_to_dm_s: float
    ack_s: float


async def run(env: Env) -> BenchResult:
    p = env.scaled(FULL, QUICK)
    # Fresh requesters every round: asking again for access one holds is an extension
    # offer, not a request with a card.
    users = bench_users(sum(c * r for c, r in p.rounds.items()))
    samples: list[Sample] = []
    async with serve_bed(env, users) as bed:
        profile_to = env.results_dir / f"{NAME}.profile.txt"
        pids = {
            "accessbot serve": bed.pid,
            "bench (Slack emulator)": os.getpid(),
            **env.server_pids("a"),
        }
        with sampling(bed.pid, profile_to, enabled=env.profile), CpuMeter(pids) as cpu:
            fresh = iter(users)
            for concurrency, rounds in p.rounds.items():
                for _ in range(rounds):
                    samples += await _round(bed, [next(fresh) for _ in range(concurrency)])
    result = _result(p, samples)
    result.tables.append(cpu.table("all rounds (requests, cards, clicks, provisioning)"))
    return result


async def _round(bed: ServeBed, users: list[str]) -> list[Sample]:
    await gather_limited((bed.request_edit(u) for u in users), limit=20)
    cards = await asyncio.gather(*(bed.pending_card(u, timeout=60) for u in users))
    clicks = [(grant.id, bed.approve_body(grant.id, card)) for grant, card in cards]
    sent_at: dict[str, float] = {}
    acks: dict[str, float] = {}

    async def click(grant_id: str, body: bytes) -> None:
        sent_at[grant_id] = time.time()
        _, acks[grant_id] = await bed.post(body)

    await asyncio.gather(*(click(grant_id, body) for grant_id, body in clicks))
    uploads = await wait_for(
        lambda: _uploads(bed, set(sent_at)), timeout=120, what=f"{len(users)} kubeconfig uploads"
    )
    return [
        Sample(len(users), uploads[grant_id] - sent_at[grant_id], acks[grant_id])
        for grant_id in sent_at
    ]


async def _uploads(bed: ServeBed, grant_ids: set[str]) -> dict[str, float] | None:
    """When each grant's kubeconfig was shared, once all of them were (None until then)."""
    found: dict[str, float] = {}
    for call in bed.emu.calls_to(UPLOAD):
        text = json.dumps(call.params)
        for grant_id in grant_ids:
            if grant_id in text:
                found[grant_id] = call.at
    return found if len(found) == len(grant_ids) else None


def _result(p: Params, samples: list[Sample]) -> BenchResult:
    rows: list[dict[str, Any]] = []
    targets = []
    for concurrency, rounds in p.rounds.items():
        mine = [s for s in samples if s.concurrency == concurrency]
        dm = Dist.seconds(s.click_to_dm_s for s in mine)
        ack = Dist.seconds(s.ack_s for s in mine)
        rows.append(
            {
                "concurrent approvals": concurrency,
                "rounds": rounds,
                **dm.row(),
                "click ack p99_ms": ack.row()["p99_ms"],
            }
        )
        targets.append(
            Target(
                f"click-to-DM p99, {concurrency} concurrent",
                TARGET_S.get(concurrency, DEFAULT_TARGET_S) * 1000,
                dm.row()["p99_ms"],
                "ms",
            )
        )
    return BenchResult(
        name=NAME,
        title=TITLE,
        tables=[
            Table(
                "Approve click to kubeconfig file shared in the DM (all samples of all rounds)",
                [
                    "concurrent approvals",
                    "rounds",
                    "n",
                    "p50_ms",
                    "p99_ms",
                    "max_ms",
                    "click ack p99_ms",
                ],
                rows,
            )
        ],
        targets=targets,
        notes=[
            "Each approval provisions for real on apiserver a: ServiceAccount, RoleBinding, "
            "TokenRequest, token verification (SelfSubjectReview, SelfSubjectRulesReview), "
            "then the Slack upload (files.getUploadURLExternal, upload, complete)."
        ],
        data={
            "params": {str(k): v for k, v in p.rounds.items()},
            "samples": [s.__dict__ for s in samples],
        },
    )
