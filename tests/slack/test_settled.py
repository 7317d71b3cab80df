"""The barrier tests put before "nothing bad happened" is not vacuous: it holds
while a listener is still at work after its ack."""

from __future__ import annotations

import pytest

from tests.slack.support import SlackBed

pytestmark = pytest.mark.cluster


async def test_settled_waits_for_a_listener_still_at_work_after_its_ack(bed: SlackBed) -> None:
    # The listener acks at once and then opens the form; Slack takes a while to answer.
    # Were settled() blind to listeners running on after their ack it would return at
    # once, before views.open has even been answered (and recorded).
    bed.emu.delay("views.open", 1.0)
    reply = await bed.command("", "U0ALICE")
    assert reply.status == 200
    await bed.settled()
    assert len(bed.emu.calls_to("views.open")) == 1
    assert bed.in_flight() == []
