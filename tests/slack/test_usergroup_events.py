"""Usergroup membership follows Slack's events, and Slack outages fall back to the
last good data: signed deliveries to the real handler, the emulator failing on cue."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from bot.lifecycle import State
from bot.slack import SlackDirectory, make_slack_client
from tests.slack.support import APPROVALS, BOT_TOKEN, SlackBed, populate
from tests.slack.test_flows import request_edit
from tests.support.slack_emulator import SlackEmulator


async def approve(bed: SlackBed, grant_id: str, user: str) -> None:
    reply = await bed.click("access_approve", grant_id, user, bed.card_for(grant_id), APPROVALS)
    assert reply.status == 200


async def two_requests(bed: SlackBed) -> tuple[str, str]:
    first = await request_edit(bed, text="first")
    second_reply = await bed.command("request edit -n team-b -d 1h second", "U0ALICE")
    assert second_reply.status == 200
    await bed.emu.wait_for(
        "chat.postMessage", 2, timeout=30, predicate=lambda c: c.params.get("channel") == APPROVALS
    )
    grants = await bed.core.store.by_user("U0ALICE")
    second = next(g.id for g in grants if g.id != first)
    return first, second


async def test_status_change_and_usergroups_outage_do_not_break_approvals(bed: SlackBed) -> None:
    """The reported case: one user_change for someone else, then usergroups.list 503s."""
    first, second = await two_requests(bed)
    await approve(bed, first, "U0PL1")  # loads the usergroup map
    await bed.wait_grant(first, State.ACTIVE)
    lists_before = len(bed.emu.calls_to("usergroups.list"))

    status = await bed.event(bed.emu.change_status("U0BOB"))
    assert status.status == 200
    bed.emu.server_error("usergroups.list", 503, times=50)

    await approve(bed, second, "U0PL2")
    await bed.wait_grant(second, State.ACTIVE)
    assert not bed.responses(lambda c: "went wrong" in json.dumps(c.params))
    # The status change evicted nothing about usergroups: no reload was even tried.
    assert len(bed.emu.calls_to("usergroups.list")) == lists_before


async def test_no_usergroup_data_at_all_refuses_with_a_clear_reply(bed: SlackBed) -> None:
    grant_id = await request_edit(bed)
    bed.emu.server_error("usergroups.list", 503, times=50)
    await approve(bed, grant_id, "U0PL1")  # an approver only through @platform-leads
    reply = await bed.wait_response("Slack did not answer")
    assert "try again" in json.dumps(reply.params)
    assert "http_503" in json.dumps(reply.params)
    pending = await bed.core.store.get(grant_id)
    assert pending is not None
    assert pending.state == State.PENDING  # fails closed

    card = bed.card_for(grant_id)
    bed.emu.reset()  # Slack is back (and forgets what it recorded)
    reply2 = await bed.click("access_approve", grant_id, "U0PL1", card, APPROVALS)
    assert reply2.status == 200
    await bed.wait_grant(grant_id, State.ACTIVE)


async def test_membership_events_apply_at_once(bed: SlackBed) -> None:
    first, second = await two_requests(bed)
    await approve(bed, first, "U0PL1")
    await bed.wait_grant(first, State.ACTIVE)
    # From here on Slack's usergroups.list is down: only events can say who is in.
    bed.emu.server_error("usergroups.list", 503, times=50)

    removed = bed.emu.change_usergroup_members("S0PLATFORM", add=["U0BOB"], remove=["U0PL2"])
    assert (await bed.event(removed)).status == 200

    await approve(bed, second, "U0PL2")  # left the group a moment ago
    await bed.wait_response("not an approver")
    pending = await bed.core.store.get(second)
    assert pending is not None
    assert pending.state == State.PENDING

    await approve(bed, second, "U0BOB")  # joined it
    await bed.wait_grant(second, State.ACTIVE)


async def test_whole_group_updates_and_disabling(bed: SlackBed) -> None:
    first, second = await two_requests(bed)
    await approve(bed, first, "U0PL1")
    await bed.wait_grant(first, State.ACTIVE)
    bed.emu.server_error("usergroups.list", 503, times=50)

    group = bed.emu._usergroups["S0PLATFORM"]
    group["users"], group["user_count"] = ["U0BOSS"], 1
    assert (await bed.event(bed.emu.usergroup_event("S0PLATFORM"))).status == 200
    await approve(bed, second, "U0PL1")  # no longer listed in the updated group
    await bed.wait_response("not an approver")

    group["date_delete"] = 1_700_000_000  # disabled: nobody approves through it any more
    assert (await bed.event(bed.emu.usergroup_event("S0PLATFORM"))).status == 200
    await approve(bed, second, "U0BOSS")
    await bed.wait_response("not an approver")
    still = await bed.core.store.get(second)
    assert still is not None
    assert still.state == State.PENDING


async def test_deactivation_still_offboards_and_leaves_groups(bed: SlackBed) -> None:
    first, _ = await two_requests(bed)
    await approve(bed, first, "U0PL1")
    await bed.wait_grant(first, State.ACTIVE)
    event = bed.emu.deactivate_user("U0ALICE")
    assert (await bed.event(event)).status == 200
    await bed.wait_grant(first, State.REVOKED)
    offboarding = await bed.core.store.offboarding("U0ALICE")
    assert offboarding is not None


# -- the directory itself -----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator() as emulator:
        populate(emulator)
        yield emulator


def directory_for(emu: SlackEmulator, clock: Clock) -> SlackDirectory:
    return SlackDirectory(make_slack_client(BOT_TOKEN, emu.base_url), ttl_seconds=60, clock=clock)


async def test_expired_map_falls_back_on_503_after_status_changes(emu: SlackEmulator) -> None:
    clock = Clock()
    directory = directory_for(emu, clock)
    assert await directory.groups_of("U0PL1") == {"platform-leads"}
    directory.user_changed(emu.change_status("U0PL1")["user"])
    directory.user_changed(emu.change_status("U0BOB")["user"])
    clock.now += 61
    emu.server_error("usergroups.list", 503, times=50)
    assert await directory.groups_of("U0PL1") == {"platform-leads"}
    assert await directory.members_of("@sre") == {"U0SRE1"}


async def test_people_lookups_fall_back_to_the_last_answer(emu: SlackEmulator) -> None:
    clock = Clock()
    directory = directory_for(emu, clock)
    assert await directory.handle_of("U0BOB") == "bob.smith"
    assert await directory.user_for_email("alice@example.com") == "U0ALICE"
    clock.now += 61
    emu.server_error("users.info", 503, times=50)
    emu.server_error("users.lookupByEmail", 503, times=50)
    assert await directory.handle_of("U0BOB") == "bob.smith"
    assert await directory.user_exists("U0BOB") is True
    assert await directory.user_for_email("alice@example.com") == "U0ALICE"


async def test_user_change_updates_only_that_user(emu: SlackEmulator) -> None:
    clock = Clock()
    directory = directory_for(emu, clock)
    assert await directory.handle_of("U0BOB") == "bob.smith"
    assert await directory.handle_of("U0ALICE") == "alice"
    calls = len(emu.calls_to("users.info"))
    emu.add_user("U0BOB", name="robert", email="robert@example.com")
    directory.user_changed(emu.change_status("U0BOB")["user"])
    assert await directory.handle_of("U0BOB") == "robert"  # from the event itself
    assert await directory.user_for_email("robert@example.com") == "U0BOB"
    assert await directory.handle_of("U0ALICE") == "alice"
    assert len(emu.calls_to("users.info")) == calls


async def test_event_during_a_reload_is_not_lost(emu: SlackEmulator) -> None:
    clock = Clock()
    directory = directory_for(emu, clock)
    emu.delay("usergroups.list", 0.5)
    loading = asyncio.create_task(directory.groups_of("U0PL2"))
    await emu.wait_started("usergroups.list")
    # Slack removes U0PL2 while the list (still naming U0PL2) is on its way.
    await directory.usergroup_members_changed("S0PLATFORM", added=[], removed=["U0PL2"])
    await loading
    assert await directory.members_of("platform-leads") == {"U0PL1"}


async def test_new_group_from_subteam_created(emu: SlackEmulator) -> None:
    clock = Clock()
    directory = directory_for(emu, clock)
    assert await directory.members_of("oncall") == frozenset()
    emu.add_usergroup("S0ONCALL", "oncall", ["U0BOB"])
    emu.server_error("usergroups.list", 503, times=50)
    await directory.usergroup_changed(emu.usergroup_event("S0ONCALL", "subteam_created")["subteam"])
    assert await directory.members_of("@oncall") == {"U0BOB"}
    assert await directory.groups_of("U0BOB") == {"oncall"}
