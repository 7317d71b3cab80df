"""The listeners of approve with changes (the button and its form) and of the offer
made when a request duplicates a live grant (Extend / Cancel).

Authorization is the use case's, asked on the click and again on the submission.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncAck

from bot.errors import NotAllowed, UnknownGrant
from bot.lifecycle import State
from bot.narrowing import NarrowingAsk
from bot.slack import ids
from bot.slack.blocks import Message
from bot.slack.blocks.narrowing import offer_declined
from bot.slack.blocks.replies import (
    DATABASE_UNREACHABLE,
    GRANT_GONE,
    decision_note,
    extended,
    not_pending,
    sentence,
)
from bot.slack.forms import grant_from_metadata
from bot.slack.modals import PRE_ACK_PATIENCE_SECONDS
from bot.slack.narrow_form import narrow_modal, read_narrow_form
from bot.slack.payloads import clicker, trigger, view_values
from bot.slack.surface import Listeners, Surface

log = logging.getLogger(__name__)

JSON = dict[str, Any]


class NarrowingListeners(Listeners):
    """Approve with changes, and the extension offer's buttons."""

    def __init__(self, surface: Surface) -> None:
        super().__init__(surface)
        self.narrow_click = self.on_click("approve with changes", self._ask_narrowing)
        self.extend_existing_click = self.on_click("extend", self._take_offer)
        self.offer_cancel_click = self.on_click("cancel an offer", self._decline_offer)

    async def _ask_narrowing(self, grant_id: str, user: str, body: JSON) -> Message | None:
        grant = await self.workflow.check_narrower(grant_id, user)  # refusals audited
        if grant.state != State.PENDING:
            return not_pending(grant)
        await self.surface.open_view(trigger(body), narrow_modal(grant, self.policy), user)
        return None

    async def narrow_submitted(self, ack: AsyncAck, body: JSON, view: JSON) -> None:
        user = clicker(body)
        grant_id = grant_from_metadata(str(view.get("private_metadata") or ""))
        try:
            # Who may narrow first (audited when refused), so that a form from anyone
            # else is told nothing about the request; local reads, bounded so the ack
            # still goes out in time.
            grant = await asyncio.wait_for(
                self.workflow.check_narrower(grant_id, user), PRE_ACK_PATIENCE_SECONDS
            )
        except (RedisError, TimeoutError) as exc:
            log.warning("narrowing form of %s not checked: %s", grant_id, type(exc).__name__)
            await ack(response_action="errors", errors={ids.DURATION_BLOCK: DATABASE_UNREACHABLE})
            return
        except UnknownGrant:
            await ack(response_action="errors", errors={ids.DURATION_BLOCK: GRANT_GONE})
            return
        except NotAllowed as exc:
            await ack(response_action="errors", errors={ids.DURATION_BLOCK: sentence(exc)})
            return
        ask, errors = read_narrow_form(view_values(view), grant, self.policy)
        if ask is None:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        work = self._narrow(grant_id, user, ask)
        await self.surface.answer(user, None, "approve with changes", grant_id, work)

    async def _narrow(self, grant_id: str, user: str, ask: NarrowingAsk) -> Message | None:
        decision = await self.workflow.approve_narrowed(grant_id, user, ask)
        return decision_note(decision.outcome, decision.grant)

    async def _take_offer(self, grant_id: str, user: str, body: JSON) -> Message | None:
        return extended(grant_id, await self.workflow.take_offer(grant_id, user))

    async def _decline_offer(self, grant_id: str, user: str, body: JSON) -> Message | None:
        return offer_declined(await self.workflow.decline_offer(grant_id, user))
