"""Scheduled access end to end (issue 15.2): ``--at`` and the modal's start field, through
signed Slack requests, the Slack emulator, real Redis and a real apiserver. Time is a
shifted clock (the workflow's and the scheduler's), never a sleep until the start."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.lifecycle import State
from bot.models import utcnow
from tests.slack.support import APPROVALS, SlackBed, blocks_text, values_for_request
from tests.support.cluster import TestCluster
from tests.support.harness import settled
from tests.support.slack_emulator import view_errors

pytestmark = pytest.mark.cluster


class Shift:
    """The bot's clock, ``seconds`` ahead of the wall clock (both the use cases' and the
    scheduler's, so due times and "now" agree)."""

    def __init__(self, bed: SlackBed) -> None:
        self.seconds = 0.0
        bed.core.workflow.clock = self.utc
        bed.core.scheduler._clock = self.epoch

    def utc(self) -> datetime:
        return utcnow() + timedelta(seconds=self.seconds)

    def epoch(self) -> float:
        return time.time() + self.seconds

    def to(self, at: datetime) -> None:
        self.seconds = max(self.seconds, (at - utcnow()).total_seconds())


def objects_of(cluster: TestCluster, grant_id: str) -> list[str]:
    out = cluster.kubectl(
        "get", "serviceaccounts,rolebindings,clusterrolebindings", "-A", "-o", "name",
        "-l", f"accessbot.io/grant-id={grant_id}",
    )  # fmt: skip
    return out.stdout.split()


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_scheduled_grant_is_made_at_its_start_and_its_clock_starts_then(
    bed: SlackBed, cluster: TestCluster, tmp_path: Path
) -> None:
    shift = Shift(bed)
    start = (shift.utc() + timedelta(minutes=30)).replace(microsecond=0)
    grant = await bed.request(
        f"request edit -n team-a -d 2h --at {rfc3339(start)} deploy", "U0ALICE"
    )
    await bed.wait_card(grant.id)
    assert grant.starts_at == start
    card = bed.card_for(grant.id)
    assert f"<!date^{int(start.timestamp())}^" in blocks_text(card)
    history = await bed.core.store.audit_history(grant.id)
    assert history[0]["event"] == "requested"
    assert history[0]["starts_at"] == start.isoformat()

    await bed.click("access_approve", grant.id, "U0LEAD", card, APPROVALS)
    await bed.wait_grant(grant.id, State.APPROVED)
    await settled(bed.core)
    # Approved, and nothing on the cluster before the start.
    assert (await bed.core.store.get(grant.id)).state == State.APPROVED  # type: ignore[union-attr]
    assert await asyncio.to_thread(objects_of, cluster, grant.id) == []
    assert bed.emu.uploaded_files == []
    dm = await bed.wait_dm("U0ALICE", f"<!date^{int(start.timestamp())}^")
    assert "export KUBECONFIG" not in blocks_text(dm)

    shift.to(start + timedelta(seconds=5))
    active = await bed.wait_grant(grant.id, State.ACTIVE)
    assert active.expires_at == start + timedelta(hours=2)  # counted from the start
    (upload,) = bed.emu.uploaded_files
    kubeconfig = tmp_path / upload.filename
    kubeconfig.write_bytes(upload.content or b"")
    ok = await asyncio.to_thread(
        cluster.kubectl, "get", "pods", "-n", "team-a", kubeconfig=kubeconfig
    )
    assert ok.returncode == 0
    made = await asyncio.to_thread(objects_of, cluster, grant.id)
    assert len(made) == 2, made

    listed = await bed.command("list", "U0ALICE")
    assert listed.status == 200


async def test_list_shows_a_scheduled_grants_start(bed: SlackBed) -> None:
    shift = Shift(bed)
    start = (shift.utc() + timedelta(hours=3)).replace(microsecond=0)
    grant = await bed.request(f"request view -c a -n team-a --at {rfc3339(start)} look", "U0ALICE")
    await bed.wait_grant(grant.id, State.APPROVED)
    await bed.command("list", "U0ALICE")
    reply = await bed.wait_response(f"<!date^{int(start.timestamp())}^")
    assert grant.id in str(reply.params)


async def test_wall_clock_start_is_read_in_the_requesters_slack_zone(bed: SlackBed) -> None:
    shift = Shift(bed)
    zone = ZoneInfo("Asia/Kathmandu")  # +05:45, no daylight saving
    bed.emu.add_user("U0ALICE", name="alice", email="alice@example.com", tz="Asia/Kathmandu")
    local = (shift.utc() + timedelta(hours=2)).astimezone(zone).replace(second=0, microsecond=0)
    grant = await bed.request(f"request view -c a -n team-a --at {local:%H:%M} look", "U0ALICE")
    assert grant.starts_at == local.astimezone(UTC)
    assert grant.state == State.APPROVED  # approvals: 0, approved now, made later
    await settled(bed.core)
    assert (await bed.core.store.get(grant.id)).state == State.APPROVED  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("at", "words"),
    [
        ("2020-01-01T09:00Z", "has passed"),
        ("+30d", "cannot read the start time"),
        ("tomorrow", "cannot read the start time"),
    ],
)
async def test_refusals(bed: SlackBed, at: str, words: str) -> None:
    reply = await bed.command(f"request view -c a -n team-a --at {at} look", "U0ALICE")
    if words in reply.text:  # refused before the ack
        assert await bed.core.store.by_user("U0ALICE") == []
        return
    await bed.wait_response(words)
    await settled(bed.core)
    assert await bed.core.store.by_user("U0ALICE") == []


async def test_too_far_ahead_is_refused(bed: SlackBed) -> None:
    far = utcnow() + timedelta(days=7, hours=1)
    await bed.command(f"request view -c a -n team-a --at {rfc3339(far)} look", "U0ALICE")
    await bed.wait_response("more than 7d")
    await settled(bed.core)
    assert await bed.core.store.by_user("U0ALICE") == []


@pytest.mark.parametrize("how", ["revoke", "offboard"])
async def test_ended_before_its_start_nothing_is_ever_made(
    bed: SlackBed, cluster: TestCluster, how: str
) -> None:
    shift = Shift(bed)
    start = (shift.utc() + timedelta(minutes=10)).replace(microsecond=0)
    grant = await bed.request(f"request view -c a -n team-a --at {rfc3339(start)} look", "U0ALICE")
    await bed.wait_grant(grant.id, State.APPROVED)
    if how == "revoke":
        await bed.command(f"revoke {grant.id}", "U0ALICE")
        await bed.wait_grant(grant.id, State.REVOKED)
    else:
        await bed.core.workflow.offboard("U0ALICE", "U0ADMIN", "left")
        await bed.wait_grant(grant.id, State.REVOKED)
    shift.to(start + timedelta(minutes=5))
    await settled(bed.core)
    assert await asyncio.to_thread(objects_of, cluster, grant.id) == []
    assert bed.emu.uploaded_files == []
    ended = await bed.core.store.get(grant.id)
    assert ended is not None
    assert ended.ended


def with_start(values: dict[str, Any], at: datetime | None) -> dict[str, Any]:
    """The request modal's values with its start field (datetimepicker) picked."""
    picked = None if at is None else int(at.timestamp())
    return {**values, "start": {"value": {"type": "datetimepicker", "selected_date_time": picked}}}


async def test_modal_start_field(bed: SlackBed, cluster: TestCluster) -> None:
    shift = Shift(bed)
    await bed.command("", "U0ALICE")
    (opened,) = await bed.emu.wait_for("views.open")
    blocks = {b["block_id"]: b for b in opened.params["view"]["blocks"]}
    assert blocks["start"]["element"]["type"] == "datetimepicker"
    assert blocks["start"]["optional"] is True
    assert view_errors(opened.params["view"]) == []

    form = values_for_request(
        cluster="a", role="view", namespace="team-a", duration="1h", reason="look"
    )
    for at, words in (
        (shift.utc() - timedelta(hours=1), "has passed"),
        (shift.utc() + timedelta(days=8), "more than 7d"),
    ):
        answer = (await bed.submit("access_request_modal", with_start(form, at), "U0ALICE")).json()
        assert answer["response_action"] == "errors"
        assert set(answer["errors"]) == {"start"}
        assert words in answer["errors"]["start"]
    assert await bed.core.store.by_user("U0ALICE") == []

    start = (shift.utc() + timedelta(hours=1)).replace(microsecond=0)
    reply = await bed.submit("access_request_modal", with_start(form, start), "U0ALICE")
    assert reply.status == 200
    assert reply.text == ""
    grant = await bed.only_grant("U0ALICE")
    assert grant.starts_at == start
    assert grant.state == State.APPROVED
    await settled(bed.core)
    assert await asyncio.to_thread(objects_of, cluster, grant.id) == []
    shift.to(start + timedelta(seconds=2))
    active = await bed.wait_grant(grant.id, State.ACTIVE)
    assert active.expires_at == start + timedelta(hours=1)
    assert len(await asyncio.to_thread(objects_of, cluster, grant.id)) == 2
