"""Governance numbers on ``GET /metrics`` after a scripted day through the real workflow.

Real Redis, real apiservers, the real HTTP app; the workflow's clock is the
only thing steered: a request is submitted "minutes ago" (so approvers took
that long) and one "almost a day ago" (so it times out now), never ahead of
real time, so every job the scheduler holds still falls due on the wall clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from bot.core import redis_client
from bot.http.app import HttpService
from bot.lifecycle import State
from bot.metrics import Metrics
from bot.models import Grant
from bot.policy import AccessRequestSpec
from bot.scheduler import Scheduler
from bot.store import Store
from tests.support.cluster import TestCluster
from tests.support.harness import Harness, wait_for_grant, workflow_harness

pytestmark = pytest.mark.cluster
HOUR = 3600.0


@dataclass
class Clock:
    """Wall-clock time shifted by ``offset`` (only ever into the past here)."""

    offset: dt.timedelta = field(default_factory=dt.timedelta)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{name}{labels} missing from /metrics"
    return samples[key]


def spec(
    role: str, cluster: str, ns: str | None, *, who: str = "U0ALICE", hours: float = 1
) -> AccessRequestSpec:
    return AccessRequestSpec(
        requester=who,
        role=role,
        cluster=cluster,
        namespace=ns,
        duration=dt.timedelta(hours=hours),
        reason="scripted day",
    )


@dataclass
class Day:
    h: Harness
    clock: Clock
    session: aiohttp.ClientSession
    server: TestServer

    async def scrape(self, server: TestServer | None = None) -> Samples:
        async with self.session.get((server or self.server).make_url("/metrics")) as resp:
            assert resp.status == 200
            return parse(await resp.text())

    async def submit(self, s: AccessRequestSpec, *, ago: dt.timedelta) -> Grant:
        """Submit as if ``ago`` before now; the decision that follows happens now."""
        self.clock.offset = -ago
        try:
            return await self.h.workflow.submit(s)
        finally:
            self.clock.offset = dt.timedelta()


@pytest.fixture
async def day(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> AsyncIterator[Day]:
    async with workflow_harness(redis_url, {"a": cluster, "b": cluster_b}, tmp_path) as h:
        clock = Clock()
        h.core.workflow.clock = clock
        metrics = Metrics()
        metrics.attach(h.core.store, h.core.policy)
        app = HttpService(h.core, metrics, offboard_secret=None).build()
        async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as s:
            yield Day(h, clock, s, server)


def activated_at(g: Grant) -> dt.datetime:
    return next(s.at for s in g.history if s.to_state == State.ACTIVE)


async def test_a_scripted_day_of_ten_requests(day: Day) -> None:
    h, minute = day.h, dt.timedelta(minutes=1)
    wf = h.workflow

    # 1. Nobody decides: submitted a day ago less 2 s, it times out just now.
    late = await day.submit(spec("edit", "a", "team-a"), ago=dt.timedelta(hours=24, seconds=-2))
    await h.wait_state(late.id, State.TIMED_OUT)

    # 2-4. Auto-approved view grants: 1 h and 2 h on a, 1 h on b.
    views = []
    for cluster, ns, hours in (("a", "team-a", 1), ("a", "team-b", 2), ("b", "team-b", 1)):
        g = await day.submit(spec("view", cluster, ns, hours=hours), ago=dt.timedelta())
        views.append(await h.wait_state(g.id, State.ACTIVE))

    # 5-7. Approved after 10, 20 and 30 minutes (the last one needs two approvers).
    approved = []
    for s, wait, approvers in (
        (spec("edit", "a", "team-a"), 10 * minute, ["U0LEAD"]),
        (spec("edit", "a", "team-b", who="U0BOB"), 20 * minute, ["U0PL1"]),
        (spec("cluster-admin", "b", None), 30 * minute, ["U0LEAD", "U0SRE1"]),
    ):
        g = await day.submit(s, ago=wait)
        for person in approvers:
            await wf.approve(g.id, person)
        approved.append(await h.wait_state(g.id, State.ACTIVE))

    # 8-9. Denied after 5 minutes and after 1 minute.
    for s, wait, by in (
        (spec("edit", "b", "team-a"), 5 * minute, "U0LEAD"),
        (spec("cluster-admin", "a", None, who="U0BOB"), minute, "U0SRE1"),
    ):
        g = await day.submit(s, ago=wait)
        await wf.deny(g.id, by, "not today")
        await h.wait_state(g.id, State.DENIED)

    # 10. Withdrawn by its requester.
    g = await day.submit(spec("edit", "a", "team-a", who="U0BOB"), ago=2 * minute)
    await wf.cancel(g.id, "U0BOB")
    await h.wait_state(g.id, State.CANCELLED)

    # An extension adds 30 minutes of privilege; a revocation takes none back.
    extended = await wf.extend(views[0].id, "U0ALICE", 30 * minute)
    assert extended.expires_at == views[0].expires_at + 30 * minute  # type: ignore[operator]
    # An extension that needs approval: a request of its own, decided 15 minutes later.
    edit = approved[0]
    assert edit.expires_at is not None
    day.clock.offset = -15 * minute
    ext = await wf.extend(edit.id, "U0ALICE", 30 * minute)
    day.clock.offset = dt.timedelta()
    assert ext.kind == "extend"
    await wf.approve(ext.id, "U0LEAD")
    await wait_for_grant(
        h.core, edit.id, lambda g: g.expires_at == edit.expires_at + 30 * minute, 30
    )
    await wf.revoke(views[2].id, "U0ADMIN", "done early")
    await h.wait_state(views[2].id, State.REVOKED)
    revoked = await wait_for_grant(
        h.core, views[2].id, lambda g: g.receipt is not None and g.receipt.verified, 30
    )

    m = await day.scrape()

    # Requests by outcome: every one of the ten counted once, under its outcome.
    assert value(m, "accessbot_requests_submitted_total", kind="access") == 10
    outcomes = {
        "auto_approved": 3, "approved": 3, "denied": 2, "timed_out": 1, "cancelled": 1,
        "failed": 0,
    }  # fmt: skip
    for outcome, n in outcomes.items():
        assert value(m, "accessbot_requests_total", kind="access", outcome=outcome) == n, outcome

    assert value(m, "accessbot_requests_submitted_total", kind="extend") == 1
    assert value(m, "accessbot_requests_total", kind="extend", outcome="approved") == 1

    # Time from request to decision: what the approvers took, not the test's speed.
    d = "accessbot_request_decision_seconds"
    assert value(m, f"{d}_count", kind="access", outcome="approved") == 3
    assert 3600 <= value(m, f"{d}_sum", kind="access", outcome="approved") < 3600 + 60
    assert value(m, f"{d}_bucket", kind="access", outcome="approved", le="300.0") == 0
    assert value(m, f"{d}_bucket", kind="access", outcome="approved", le="900.0") == 1
    assert value(m, f"{d}_bucket", kind="access", outcome="approved", le="3600.0") == 3
    assert value(m, f"{d}_count", kind="access", outcome="denied") == 2
    assert 360 <= value(m, f"{d}_sum", kind="access", outcome="denied") < 360 + 60
    assert value(m, f"{d}_count", kind="access", outcome="auto_approved") == 3
    assert value(m, f"{d}_sum", kind="access", outcome="auto_approved") < 1
    assert 900 <= value(m, f"{d}_sum", kind="extend", outcome="approved") < 900 + 60

    # Privilege-seconds: each activation's expiry minus activation time, plus extensions.
    grants = {g.id: g for g in await h.core.store.by_state(State.ACTIVE, State.REVOKED)}
    expected: dict[tuple[str, str], float] = {}
    for g in grants.values():
        assert g.expires_at is not None
        key = (g.cluster, g.role)
        expected[key] = expected.get(key, 0.0) + (g.expires_at - activated_at(g)).total_seconds()
    p = "accessbot_privilege_seconds_granted_total"
    nominal = {
        ("a", "view"): 3.5 * HOUR, ("b", "view"): HOUR, ("a", "edit"): 2.5 * HOUR,
        ("b", "cluster-admin"): HOUR, ("b", "edit"): 0, ("a", "cluster-admin"): 0,
    }  # fmt: skip
    for (cluster, role), hours in nominal.items():
        got = value(m, p, cluster=cluster, role=role)
        assert got == pytest.approx(expected.get((cluster, role), 0.0), abs=1e-3), (cluster, role)
        # What was asked for, give or take provisioning time and whole-second expiries.
        assert hours - 300 < got < hours + 5, (cluster, role, got)

    # Active grants now: the revoked and the denied are not counted; every
    # (cluster, role) the policy allows has a series, 0 included.
    active = {
        ("a", "view"): 2, ("b", "view"): 0, ("a", "edit"): 2, ("b", "edit"): 0,
        ("b", "cluster-admin"): 1, ("a", "cluster-admin"): 0,
    }  # fmt: skip
    for (cluster, role), n in active.items():
        assert value(m, "accessbot_active_grants", cluster=cluster, role=role) == n
    assert value(m, "accessbot_grant_transitions_total", state="revoked") == 1
    assert value(m, "accessbot_grant_transitions_total", state="active") == 6
    # Verification (fed by the revocation check) starts at 0 failures per cluster.
    for cluster in ("a", "b"):
        assert value(m, "accessbot_revocation_verification_failures_total", cluster=cluster) == 0
    # The one revocation of the day: one verified receipt, its latency the record's own
    # (from the revocation to the verification), not the test's speed.
    assert revoked.receipt is not None
    ended_at = next(s.at for s in revoked.history if s.to_state == State.REVOKED)
    v = "accessbot_revocation_verification_seconds"
    assert value(m, f"{v}_count", cluster="b") == 1
    latency = (revoked.receipt.at - ended_at).total_seconds()
    assert value(m, f"{v}_sum", cluster="b") == pytest.approx(max(0.0, latency), abs=1e-3)
    assert value(m, "accessbot_revocation_receipts_total", cluster="b", result="verified") == 1

    # A restarted process, or a second replica, reads the same active grants
    # from the store; its event counters start from its own zero.
    fresh = Metrics()
    fresh.attach(h.core.store, h.core.policy)
    app = HttpService(h.core, fresh, offboard_secret=None).build()
    async with TestServer(app, host="127.0.0.1") as other:
        m2 = await day.scrape(other)
    for (cluster, role), n in active.items():
        assert value(m2, "accessbot_active_grants", cluster=cluster, role=role) == n
    assert value(m2, "accessbot_requests_total", kind="access", outcome="approved") == 0

    # No user, reason or token ever becomes a label.
    async with day.session.get(day.server.make_url("/metrics")) as resp:
        text = await resp.text()
    for secret in ("U0ALICE", "U0BOB", "scripted day", "not today", "done early"):
        assert secret not in text


async def test_verification_and_an_unreachable_store() -> None:
    metrics = Metrics()
    metrics.observe_verification(1.5, True, "a")
    metrics.observe_verification(40.0, False, "a")
    dead = redis_client("redis://127.0.0.1:1")
    metrics.attach(Store(dead, Scheduler(dead)))
    try:
        m = parse((await metrics.scrape()).decode())
    finally:
        await dead.aclose()
    v = "accessbot_revocation_verification_seconds"
    assert value(m, f"{v}_count", cluster="a") == 2
    assert value(m, f"{v}_bucket", cluster="a", le="2.0") == 1
    assert value(m, "accessbot_revocation_verification_failures_total", cluster="a") == 1
    # No stale or made-up gauge: the scrape says the read failed instead.
    assert not any(name == "accessbot_active_grants" for name, _ in m)
    assert value(m, "accessbot_active_grants_read_errors_total") == 1
