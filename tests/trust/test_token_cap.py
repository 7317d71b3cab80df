"""A cluster that caps tokens: the bot tells and schedules only what the cluster honours.

The apiserver runs with ``--service-account-max-token-expiration=1h``; a 3 h
grant must end when its token does, and everything the user is told or the
scheduler will do must say so. Slack is the emulator; the rest is real.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml

from bot.lifecycle import State
from bot.models import Grant
from k8s import grants as k8s_grants
from tests.slack.support import SlackBed, blocks_text, slack_bed
from tests.support.cluster import TestCluster
from tests.support.harness import scheduled_steps, wait_for_grant

pytestmark = pytest.mark.cluster

CAP_SECONDS = 3600  # tests/conftest.py TOKEN_CAP


@pytest.fixture
async def capped_bed(
    redis_url: str, cluster_capped: TestCluster, cluster: TestCluster, tmp_path: Path
) -> AsyncIterator[SlackBed]:
    async with slack_bed(redis_url, {"a": cluster_capped, "b": cluster}, tmp_path) as b:
        yield b


def claims(content: bytes) -> dict[str, Any]:
    token = yaml.safe_load(content)["users"][0]["user"]["token"]
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def dates_in(message: dict[str, Any]) -> list[int]:
    """Every moment a Slack date token in the message shows (``<!date^SECONDS^…>``)."""
    text = blocks_text(message) + str(message.get("text", ""))
    return [int(n) for n in re.findall(r"<!date\^(\d+)\^", text)]


async def annotations_of(bed: SlackBed, grant_id: str) -> set[int | None]:
    objs = await k8s_grants.list_managed(bed.core.clusters["a"])
    return {
        int(o.expires_at.timestamp()) if o.expires_at else None
        for o in objs
        if o.grant_id == grant_id
    }


async def assert_schedule_follows(bed: SlackBed, grant: Grant) -> None:
    assert grant.expires_at is not None
    steps = await scheduled_steps(bed.core, grant.id)
    assert "expire" in steps
    assert "remind" in steps
    assert steps["expire"] == pytest.approx(grant.expires_at.timestamp())
    reminder_before = bed.core.policy.defaults.reminder_before.total_seconds()
    assert steps["remind"] == pytest.approx(grant.expires_at.timestamp() - reminder_before)


async def test_three_hour_grant_on_a_one_hour_cluster_ends_with_its_token(
    capped_bed: SlackBed, cluster_capped: TestCluster, tmp_path: Path
) -> None:
    bed = capped_bed
    await bed.command("request view -c a -n team-a -d 3h reading the logs", "U0ALICE")
    grant = await bed.only_grant("U0ALICE")
    active = await bed.wait_grant(grant.id, State.ACTIVE, State.FAILED)
    assert active.state == State.ACTIVE, active.failure
    (upload,) = bed.emu.uploaded_files
    token = claims(upload.content or b"")

    # The cluster cut the token to 1h; the record ends with it, not 3h later.
    assert token["exp"] - token["iat"] == CAP_SECONDS
    assert active.expires_at is not None
    assert int(active.expires_at.timestamp()) == token["exp"]
    assert active.token_cap_s == CAP_SECONDS
    await assert_schedule_follows(bed, active)
    assert await annotations_of(bed, grant.id) == {token["exp"]}

    # The DM names the shortened end and why, and no later moment anywhere.
    dm = await bed.wait_dm("U0ALICE", "export KUBECONFIG")
    shown = blocks_text(dm)
    assert "caps tokens at 1h" in shown
    assert dates_in(dm)
    assert max(dates_in(dm)) == token["exp"]
    for message in bed.dm("U0ALICE"):
        assert all(d <= token["exp"] for d in dates_in(message)), message

    # And the file works as delivered.
    path = tmp_path / upload.filename
    path.write_bytes(upload.content or b"")
    can = await asyncio.to_thread(
        cluster_capped.kubectl, "auth", "can-i", "list", "pods", "-n", "team-a", kubeconfig=path
    )
    assert can.stdout.strip() == "yes"

    # Extending by 2h: the new token is capped at 1h from now, so is the extension.
    while time.time() < token["iat"] + 2:  # a later second, so the new token ends later
        await asyncio.sleep(0.1)
    await bed.command(f"extend {grant.id} -d 2h", "U0ALICE")
    await bed.wait_response("is extended")
    extended = await wait_for_grant(
        bed.core, grant.id, lambda g: g.expires_at != active.expires_at, timeout=30
    )
    await bed.emu.wait_for("files.completeUploadExternal", 2)
    fresh = claims(bed.emu.uploaded_files[-1].content or b"")
    assert fresh["exp"] - fresh["iat"] == CAP_SECONDS
    assert extended.expires_at is not None
    assert int(extended.expires_at.timestamp()) == fresh["exp"]
    assert fresh["exp"] > token["exp"]
    assert extended.token_cap_s == CAP_SECONDS
    await assert_schedule_follows(bed, extended)
    assert await annotations_of(bed, grant.id) == {fresh["exp"]}
    told = await bed.wait_dm("U0ALICE", "was extended")
    assert "caps tokens at 1h" in blocks_text(told)
    assert max(dates_in(told)) == fresh["exp"]


async def test_a_grant_within_the_cap_keeps_its_own_end(capped_bed: SlackBed) -> None:
    bed = capped_bed
    await bed.command("request view -c a -n team-a -d 30m reading", "U0ALICE")
    grant = await bed.only_grant("U0ALICE")
    active = await bed.wait_grant(grant.id, State.ACTIVE, State.FAILED)
    assert active.state == State.ACTIVE, active.failure
    (upload,) = bed.emu.uploaded_files
    token = claims(upload.content or b"")
    assert active.expires_at is not None
    assert active.token_cap_s is None
    assert int(active.expires_at.timestamp()) <= token["exp"]
    assert active.duration.total_seconds() == 1800
    await assert_schedule_follows(bed, active)
    dm = await bed.wait_dm("U0ALICE", "export KUBECONFIG")
    assert "caps tokens" not in blocks_text(dm)
