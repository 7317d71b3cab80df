"""Break-glass access and reason rules (issue 15, items 5 and 6), end to end: signed Slack
requests, the Slack emulator, real Redis and real apiservers.

The 15-minute ratification window is not waited out: the workflow's clock runs 16
minutes behind while the grant is taken and activated, then is set right and the
grant's step re-filed, so its deadline is due at once (the controllable clock).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from bot.agenda import StepKind
from bot.lifecycle import State
from bot.metrics import Metrics
from bot.models import Grant
from tests.slack.support import (
    APPROVALS,
    POLICY,
    SlackBed,
    blocks_text,
    slack_bed,
    values_for_request,
)
from tests.support.cluster import TestCluster
from tests.support.harness import wait_for_grant
from tests.support.patience import PATIENCE

# "fix": break-glass, with a ticket in the reason; "edit" (from POLICY): neither.
FIX_ROLE = """  fix:   {cluster_role: edit, scope: namespace, max_duration: 2h, approvals: 1,
          approvers: ["U0LEAD", "@platform-leads"], namespaces: ["team-*"], clusters: [a],
          accepts_risks: [token-minting, impersonation],
          break_glass: {ratify_within: 15m, approvals: 1},
          reason: {required: true, pattern: "^[A-Z]+-[0-9]+", hint: "a ticket like OPS-123"}}
"""
BG_POLICY = POLICY.replace("defaults:", FIX_ROLE + "defaults:", 1)
HINT = "The reason must match ^[A-Z]+-[0-9]+ (a ticket like OPS-123)"
BEHIND = dt.timedelta(minutes=16)


@dataclass
class Clock:
    """Wall-clock time shifted by ``offset``."""

    offset: dt.timedelta = field(default_factory=dt.timedelta)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


@dataclass
class Bed:
    slack: SlackBed
    clock: Clock
    metrics: Metrics


@pytest.fixture
async def bg(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> AsyncIterator[Bed]:
    async with slack_bed(
        redis_url, {"a": cluster, "b": cluster_b}, tmp_path, policy_text=BG_POLICY
    ) as bed:
        clock = Clock()
        bed.core.workflow.clock = clock
        metrics = Metrics()
        metrics.attach(bed.core.store, bed.core.policy)
        yield Bed(bed, clock, metrics)


def breakglass_count(metrics: Metrics, outcome: str) -> float:
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == "accessbot_breakglass_total" and sample.labels == {
                "outcome": outcome
            }:
                return float(sample.value)
    raise AssertionError(f"no accessbot_breakglass_total{{outcome={outcome!r}}}")


async def until_counted(metrics: Metrics, outcome: str, expected: float) -> None:
    """The metric is fed by the store's after-commit hooks, which run after the
    notifier's (the DM may arrive first): wait for the count, not a moment."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while breakglass_count(metrics, outcome) != expected:
        assert loop.time() < deadline, f"{outcome} never reached {expected}"
        await asyncio.sleep(0.05)


async def take_behind(bg: Bed, text: str, user: str = "U0ALICE") -> Grant:
    """``/access <text>`` with the clock 16 minutes behind, until the grant is active."""
    bg.clock.offset = -BEHIND
    grant = await bg.slack.request(text, user)
    assert grant.break_glass is not None
    return await bg.slack.wait_grant(grant.id, State.ACTIVE)


async def clock_right(bg: Bed, grant: Grant) -> None:
    """Set the clock right and file the grant's step afresh (its deadline is now past)."""
    bg.clock.offset = dt.timedelta()
    await bg.slack.core.store.refile(grant.id)


def service_account(cluster: TestCluster, grant: Grant) -> int:
    """200 if the grant's ServiceAccount exists on the cluster, else the API status."""
    sa = next(o for o in grant.objects or () if o.kind == "ServiceAccount")
    try:
        client.CoreV1Api(cluster.api_client()).read_namespaced_service_account(
            sa.name, sa.namespace
        )
    except ApiException as exc:
        return int(exc.status)
    return 200


def has_ratify(message: dict[str, Any]) -> bool:
    return "access_ratify" in json.dumps(message.get("blocks") or [])


async def test_unratified_break_glass_is_revoked_at_the_deadline(
    bg: Bed, cluster: TestCluster
) -> None:
    bed = bg.slack
    grant = await take_behind(bg, "breakglass fix -n team-a -d 1h OPS-7 the database is down")
    assert grant.approvals == ()  # nobody approved: it was taken
    await bed.wait_response("Break-glass grant")
    card = await bed.wait_card(grant.id, has_ratify)
    assert "BREAK-GLASS" in blocks_text(card)
    await bed.wait_audit("BREAK-GLASS")
    assert service_account(cluster, grant) == 200
    await bed.wait_dm("U0ALICE", "taken without approval")
    plan = bed.core.store.plan
    assert plan is not None
    step = plan(grant, bg.clock())
    assert step is not None
    assert step.kind == StepKind.RATIFY
    assert step.due == next(s.at for s in grant.history if s.to_state == State.ACTIVE) + (
        dt.timedelta(minutes=15)
    )

    await clock_right(bg, grant)
    ended = await wait_for_grant(
        bed.core, grant.id, lambda g: g.receipt is not None and g.receipt.verified, 60
    )
    assert ended.state == State.REVOKED
    assert any("not ratified within 15m" in s.reason for s in ended.history)
    assert service_account(cluster, grant) == 404
    card = await bed.wait_card(grant.id, lambda m: not has_ratify(m))
    assert "Not ratified" in blocks_text(card)
    await until_counted(bg.metrics, "revoked", 1)
    assert breakglass_count(bg.metrics, "ratified") == 0


async def test_a_ratified_break_glass_grant_lives_on(bg: Bed, cluster: TestCluster) -> None:
    bed = bg.slack
    grant = await take_behind(bg, "breakglass fix -n team-a -d 1h OPS-8 hotfix")
    card = await bed.wait_card(grant.id, has_ratify)

    # The requester cannot ratify their own; a non-approver is refused (server-side).
    await bed.click("access_ratify", grant.id, "U0ALICE", card, APPROVALS)
    await bed.wait_response("cannot ratify your own")
    await bed.click("access_ratify", grant.id, "U0BOB", card, APPROVALS)
    await bed.wait_response("not an approver for role fix")
    await bed.settled()
    entries = await bed.core.store.audit_tail(2000)
    refused = {e["actor"]: e["reason"] for e in entries
               if e["grant_id"] == grant.id and e["event"] == "refused"}  # fmt: skip
    assert set(refused) == {"U0ALICE", "U0BOB"}
    assert all(r.startswith("ratify: ") for r in refused.values())
    unchanged = await bed.core.workflow.get(grant.id)
    assert unchanged.break_glass is not None
    assert unchanged.break_glass.ratified_by == ()

    # An approver (through the @platform-leads group) ratifies: the card updates in place.
    await bed.click("access_ratify", grant.id, "U0PL1", card, APPROVALS)
    ratified = await wait_for_grant(
        bed.core,
        grant.id,
        lambda g: g.break_glass is not None and g.break_glass.ratified_at is not None,
        PATIENCE,
    )
    assert ratified.break_glass is not None
    assert ratified.break_glass.ratified_by == ("U0PL1",)
    updated = await bed.wait_card(grant.id, lambda m: "Ratified by" in blocks_text(m))
    assert not has_ratify(updated)
    await bed.wait_dm("U0ALICE", "was ratified by")
    await until_counted(bg.metrics, "ratified", 1)
    stream = await bed.core.store.audit_tail(2000)
    events = [e["event"] for e in stream if e["grant_id"] == grant.id]
    assert "ratified" in events

    # Past the deadline, it lives on to its expiry.
    await clock_right(bg, grant)
    await bed.settled()
    after = await bed.core.workflow.get(grant.id)
    assert after.state == State.ACTIVE
    plan = bed.core.store.plan
    assert plan is not None
    step = plan(after, bg.clock())
    assert step is not None
    assert step.kind in (StepKind.REMIND, StepKind.EXPIRE)
    assert service_account(cluster, grant) == 200
    assert breakglass_count(bg.metrics, "revoked") == 0
    # A late second ratification changes nothing.
    await bed.click("access_ratify", grant.id, "U0LEAD", updated, APPROVALS)
    await bed.wait_response("already ratified")


async def test_break_glass_for_a_role_without_it_is_refused(bg: Bed) -> None:
    bed = bg.slack
    reply = await bed.command("breakglass edit -n team-a OPS-1 let me in", "U0ALICE")
    assert reply.status == 200
    text = json.dumps(reply.json())
    assert "role edit has no break-glass access" in text
    assert "/access breakglass ROLE" in text  # its usage
    await bed.settled()
    assert await bed.core.store.by_user("U0ALICE") == []


async def test_an_offboarded_user_cannot_break_glass(bg: Bed) -> None:
    bed = bg.slack
    await bed.core.workflow.offboard("U0ALICE", "hr-webhook", "left")
    await bed.command("breakglass fix -n team-a OPS-2 still here", "U0ALICE")
    await bed.settled()
    assert await bed.core.store.by_user("U0ALICE") == []


async def test_a_reason_missing_the_pattern_is_refused_with_the_hint(bg: Bed) -> None:
    bed = bg.slack
    for verb in ("request", "breakglass"):
        reply = await bed.command(f"{verb} fix -n team-a no ticket here", "U0ALICE")
        assert reply.status == 200
        assert HINT in json.dumps(reply.json())

    values = values_for_request(
        cluster="a", role="fix", namespace="team-a", duration="1h", reason="no ticket"
    )
    answer = (await bed.submit("access_request_modal", values, "U0ALICE")).json()
    assert answer["response_action"] == "errors"
    assert answer["errors"] == {"reason": f"{HINT}."}
    await bed.settled()
    assert await bed.core.store.by_user("U0ALICE") == []

    # re.search with the anchored pattern: the ticket must come first.
    ok = values_for_request(
        cluster="a", role="fix", namespace="team-a", duration="1h", reason="OPS-123 deploy"
    )
    reply = await bed.submit("access_request_modal", ok, "U0ALICE")
    assert reply.status == 200
    assert reply.text == ""
    grant = await bed.only_grant("U0ALICE")
    assert grant.state == State.PENDING
    assert grant.break_glass is None
